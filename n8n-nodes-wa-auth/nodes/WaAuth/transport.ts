import type {
	IDataObject,
	IExecuteFunctions,
	IHookFunctions,
	IHttpRequestMethods,
	IHttpRequestOptions,
	JsonObject,
} from 'n8n-workflow';
import { NodeApiError } from 'n8n-workflow';

/** The credential type every request to serve is authenticated with. */
export const CREDENTIAL = 'waAuthApi';

/** Seconds a request to serve may take: serve's own request timeout is shorter. */
const TIMEOUT_MS = 300_000;

type Context = IExecuteFunctions | IHookFunctions;

/** serve's answer: its status and JSON body. */
export interface ServeAnswer {
	status: number;
	body: IDataObject;
}

function asObject(body: unknown): IDataObject {
	if (typeof body === 'object' && body !== null && !Array.isArray(body)) return body as IDataObject;
	if (typeof body === 'string' && body.trim() !== '') {
		try {
			const parsed = JSON.parse(body) as unknown;
			if (typeof parsed === 'object' && parsed !== null) return parsed as IDataObject;
		} catch {
			// not JSON: an HTML error page of a proxy in front of serve, say
		}
		return { ok: false, error: { message: `not JSON: ${body.slice(0, 200)}` } };
	}
	return {};
}

/** The base URL of the credential, without a trailing slash. */
export async function baseUrl(ctx: Context): Promise<string> {
	const credentials = await ctx.getCredentials(CREDENTIAL);
	const url = typeof credentials.baseUrl === 'string' ? credentials.baseUrl.trim() : '';
	return url.replace(/\/+$/, '');
}

/**
 * One request to serve through n8n's helper, with the credential's key.
 *
 * A 2xx (and, with `accept`, the statuses listed) is returned; any other answer raises a
 * NodeApiError built from serve's JSON error only, and a request that got no answer one built
 * from a fixed message: never from the request, so the API key cannot appear in it.
 */
export async function serveRequest(
	ctx: Context,
	method: IHttpRequestMethods,
	path: string,
	options: { body?: unknown; qs?: IDataObject; accept?: number[]; itemIndex?: number } = {},
): Promise<ServeAnswer> {
	const base = await baseUrl(ctx);
	const request: IHttpRequestOptions = {
		method,
		url: `${base}${path}`,
		json: true,
		returnFullResponse: true,
		ignoreHttpStatusErrors: true,
		timeout: TIMEOUT_MS,
	};
	if (options.body !== undefined) request.body = options.body as IDataObject;
	if (options.qs !== undefined) request.qs = options.qs;
	let response: { statusCode?: number; body?: unknown };
	try {
		response = (await ctx.helpers.httpRequestWithAuthentication.call(ctx, CREDENTIAL, request)) as {
			statusCode?: number;
			body?: unknown;
		};
	} catch (error) {
		const code = (error as { code?: unknown }).code;
		throw new NodeApiError(
			ctx.getNode(),
			{ message: 'no answer from wa-auth serve', code: typeof code === 'string' ? code : null },
			{
				message: `wa-auth serve did not answer ${method} ${path}${typeof code === 'string' ? ` (${code})` : ''}`,
				description: `Is wa-auth serve running at ${base}?`,
				itemIndex: options.itemIndex,
			},
		);
	}
	const status = response.statusCode ?? 0;
	const body = asObject(response.body);
	if ((status >= 200 && status < 300) || (options.accept ?? []).includes(status)) {
		return { status, body };
	}
	const error = (body.error ?? {}) as IDataObject;
	const message = typeof error.message === 'string' ? error.message : `HTTP ${status}`;
	throw new NodeApiError(ctx.getNode(), body as JsonObject, {
		message: `wa-auth serve refused ${method} ${path}: ${message}`,
		description: typeof error.operator_action === 'string' ? error.operator_action : undefined,
		httpCode: String(status),
		itemIndex: options.itemIndex,
	});
}
