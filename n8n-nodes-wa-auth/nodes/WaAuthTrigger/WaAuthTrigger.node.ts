import { randomBytes } from 'crypto';
import type {
	IDataObject,
	IHookFunctions,
	INodeExecutionData,
	INodeType,
	INodeTypeDescription,
	IWebhookFunctions,
	IWebhookResponseData,
} from 'n8n-workflow';

import { CREDENTIAL, serveRequest } from '../WaAuth/transport';
import {
	chosenKinds,
	idList,
	KIND_NAMES,
	KINDS,
	kindOf,
	routeTypes,
	SeenKeys,
	validSignature,
} from './events';

/** Event keys remembered to drop a second delivery of the same event. */
const REMEMBERED_KEYS = 1000;

/** The keys this n8n process emitted, per trigger: see `SeenKeys`. */
const SEEN = new SeenKeys(REMEMBERED_KEYS);

/** The trigger's scope in `SEEN`: its workflow and node. */
function scope(ctx: IHookFunctions | IWebhookFunctions): string {
	return `${ctx.getWorkflow().id ?? ''}\u0000${ctx.getNode().name}`;
}

const OUTPUTS =
	`={{ ${JSON.stringify(KINDS)}.filter(k => ($parameter.kinds || []).includes(k)).map(k => ({ type: "main", displayName: ${JSON.stringify(KIND_NAMES)}[k] })) }}` as const;

interface RouteData extends IDataObject {
	routeId?: string;
	secret?: string;
	keys?: string[];
}

async function route(ctx: IHookFunctions): Promise<IDataObject | undefined> {
	const data = ctx.getWorkflowStaticData('node') as RouteData;
	if (!data.routeId) return undefined;
	const answer = await serveRequest(ctx, 'GET', '/webhook/routes');
	const routes = Array.isArray(answer.body.routes) ? (answer.body.routes as IDataObject[]) : [];
	return routes.find((r) => r.id === data.routeId);
}

export class WaAuthTrigger implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'WhatsApp (wa_auth) Trigger',
		name: 'waAuthTrigger',
		icon: { light: 'file:waAuth.svg', dark: 'file:waAuth.dark.svg' },
		group: ['trigger'],
		version: 1,
		subtitle: '={{($parameter["kinds"] || []).join(", ")}}',
		description:
			"Starts the workflow on WhatsApp webhook events that wa-auth serve verified and forwards, signed, to this workflow's own route",
		defaults: { name: 'WhatsApp (wa_auth) Trigger' },
		inputs: [],
		outputs: OUTPUTS,
		credentials: [{ name: CREDENTIAL, required: true }],
		webhooks: [
			{
				name: 'default',
				httpMethod: 'POST',
				responseMode: 'onReceived',
				path: 'webhook',
			},
		],
		properties: [
			{
				displayName: 'Events',
				name: 'kinds',
				type: 'multiOptions',
				default: ['messages', 'statuses', 'failures', 'account'],
				description: 'The kinds of event to receive, each on an output of its own',
				options: [
					{
						name: 'Account',
						value: 'account',
						description: 'Account, quality, capability, security and template events',
					},
					{
						name: 'Failures',
						value: 'failures',
						description: 'Failed statuses and error events, with their category',
					},
					{ name: 'Messages', value: 'messages', description: 'Incoming messages' },
					{ name: 'Other', value: 'other', description: 'Events wa_auth does not know' },
					{ name: 'Statuses', value: 'statuses', description: 'Sent, delivered and read statuses' },
				],
			},
			{
				displayName: 'Phone Number IDs',
				name: 'phoneNumberIds',
				type: 'string',
				default: '',
				placeholder: '109000000000001, 109000000000002',
				description: "Only these numbers' events (comma-separated); empty: every number's",
			},
		],
	};

	webhookMethods = {
		default: {
			async checkExists(this: IHookFunctions): Promise<boolean> {
				const found = await route(this);
				return found !== undefined && found.url === this.getNodeWebhookUrl('default');
			},

			async create(this: IHookFunctions): Promise<boolean> {
				const data = this.getWorkflowStaticData('node') as RouteData;
				const secret = randomBytes(32).toString('hex');
				const body: IDataObject = {
					url: this.getNodeWebhookUrl('default'),
					secret,
					name: `n8n workflow ${this.getWorkflow().id ?? ''}`.trim(),
					types: routeTypes(chosenKinds(this.getNodeParameter('kinds', []))),
				};
				const numbers = idList(this.getNodeParameter('phoneNumberIds', ''));
				if (numbers.length > 0) body.phone_number_ids = numbers;
				const answer = await serveRequest(this, 'POST', '/webhook/routes', { body });
				if (typeof answer.body.id !== 'string') return false;
				data.routeId = answer.body.id;
				data.secret = secret;
				data.keys = [];
				return true;
			},

			async delete(this: IHookFunctions): Promise<boolean> {
				const data = this.getWorkflowStaticData('node') as RouteData;
				if (data.routeId) {
					const id = encodeURIComponent(data.routeId);
					await serveRequest(this, 'DELETE', `/webhook/routes/${id}`, { accept: [404] });
				}
				delete data.routeId;
				delete data.secret;
				delete data.keys;
				SEEN.forget(scope(this));
				return true;
			},
		},
	};

	async webhook(this: IWebhookFunctions): Promise<IWebhookResponseData> {
		const data = this.getWorkflowStaticData('node') as RouteData;
		const request = this.getRequestObject() as unknown as { rawBody?: Buffer; body?: unknown };
		const response = this.getResponseObject();
		const raw = request.rawBody ?? Buffer.from(JSON.stringify(request.body ?? null));
		const header = this.getHeaderData()['x-wa-auth-signature-256'];
		if (!data.secret || !validSignature(data.secret, raw, header)) {
			// Not from serve's route: refused, and nothing runs. serve retries a genuine one.
			response.status(401).json({ ok: false, error: 'invalid X-Wa-Auth-Signature-256' });
			return { noWebhookResponse: true };
		}
		let forward: IDataObject;
		try {
			forward = JSON.parse(raw.toString('utf8')) as IDataObject;
		} catch {
			response.status(400).json({ ok: false, error: 'the body is not JSON' });
			return { noWebhookResponse: true };
		}
		const key = typeof forward.key === 'string' ? forward.key : undefined;
		if (key !== undefined) {
			// The static data's keys too: they survive a restart of n8n when it saved them.
			const keys = Array.isArray(data.keys) ? data.keys : [];
			if (!SEEN.add(scope(this), key) || keys.includes(key)) {
				return { webhookResponse: { ok: true, duplicate: true } };
			}
			data.keys = [...keys, key].slice(-REMEMBERED_KEYS);
		}
		const kinds = chosenKinds(this.getNodeParameter('kinds', []));
		const index = kinds.indexOf(kindOf(forward));
		if (index < 0) return { webhookResponse: { ok: true, emitted: false } };
		const outputs: INodeExecutionData[][] = kinds.map(() => []);
		outputs[index].push({ json: forward });
		return { workflowData: outputs };
	}
}
