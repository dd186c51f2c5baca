import type {
	IAuthenticateGeneric,
	ICredentialTestRequest,
	ICredentialType,
	INodeProperties,
} from 'n8n-workflow';

/**
 * The address of a running `wa-auth serve` and its API key.
 *
 * The key is sent as the `X-API-Key` header on every request. The WhatsApp access token
 * itself never reaches n8n: it stays with serve.
 */
export class WaAuthApi implements ICredentialType {
	name = 'waAuthApi';

	displayName = 'WhatsApp (Wa_auth) Serve API';

	icon = {
		light: 'file:../nodes/WaAuth/waAuth.svg',
		dark: 'file:../nodes/WaAuth/waAuth.dark.svg',
	} as const;

	documentationUrl = 'https://wa-auth.invalid/n8n-nodes-wa-auth#credentials';

	properties: INodeProperties[] = [
		{
			displayName: 'Base URL',
			name: 'baseUrl',
			type: 'string',
			default: 'http://127.0.0.1:8787',
			placeholder: 'http://wa-auth:8787',
			description: 'The address wa-auth serve listens on, without a trailing path',
			required: true,
		},
		{
			displayName: 'API Key',
			name: 'apiKey',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			description: 'The key wa-auth serve was started with (WA_AUTH_API_KEY or --api-key-file)',
			required: true,
		},
	];

	authenticate: IAuthenticateGeneric = {
		type: 'generic',
		properties: {
			headers: {
				'X-API-Key': '={{$credentials.apiKey}}',
			},
		},
	};

	// Checks the key only (serve answers 401 to a wrong one), never the WhatsApp token's health:
	// listing the webhook routes touches neither Meta nor the outbox.
	test: ICredentialTestRequest = {
		request: {
			baseURL: '={{$credentials.baseUrl.replace(/\\/+$/, "")}}',
			url: '/webhook/routes',
			method: 'GET',
		},
	};
}
