// Test doubles: a loopback HTTP server standing in for wa-auth serve, and the few n8n function
// contexts the nodes use, calling that server over a real socket (as n8n's helper would).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'http';
import type { AddressInfo } from 'net';
import type { IDataObject, IHttpRequestOptions, INode } from 'n8n-workflow';

export const KEY = 'canary-api-key-0123456789abcdef';

export interface Call {
	method: string;
	path: string;
	query: string;
	key: string | undefined;
	body: unknown;
}

export type Handler = (call: Call) => { status: number; body?: unknown } | undefined;

export class FakeServe {
	calls: Call[] = [];
	private server: Server;
	url = '';

	/**
	 * With a gate of N, answers are held until N requests wait or `gateMs` passed (a client
	 * sending fewer at once fails its assertion instead of hanging), then all go out.
	 * `mostWaiting` is the most requests that waited at once: with a gate above what the client
	 * should have open, it shows a client that had more.
	 */
	gate = 0;
	gateMs = 2000;
	mostWaiting = 0;
	private waiting: Array<() => void> = [];
	private timer: NodeJS.Timeout | undefined;

	constructor(private handler: Handler) {
		this.server = createServer((req, res) => this.serve(req, res));
	}

	async start(): Promise<this> {
		await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
		this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
		return this;
	}

	async stop(): Promise<void> {
		await new Promise<void>((resolve) => this.server.close(() => resolve()));
	}

	private serve(req: IncomingMessage, res: ServerResponse): void {
		const chunks: Buffer[] = [];
		req.on('data', (c: Buffer) => chunks.push(c));
		req.on('end', () => {
			const raw = Buffer.concat(chunks).toString('utf8');
			const [path, query = ''] = (req.url ?? '').split('?');
			const call: Call = {
				method: req.method ?? '',
				path,
				query,
				key: req.headers['x-api-key'] as string | undefined,
				body: raw ? (JSON.parse(raw) as unknown) : undefined,
			};
			this.calls.push(call);
			let answer: { status: number; body?: unknown } | undefined;
			if (call.key !== KEY) {
				answer = {
					status: 401,
					body: {
						ok: false,
						category: 'usage',
						error: { category: 'usage', message: 'wrong API key' },
					},
				};
			} else {
				answer = this.handler(call) ?? {
					status: 404,
					body: { ok: false, error: { message: 'no such route' } },
				};
			}
			const reply = (): void => {
				res.writeHead(answer.status, { 'Content-Type': 'application/json' });
				res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
			};
			if (this.gate > 0) this.hold(reply);
			else reply();
		});
	}

	private hold(reply: () => void): void {
		this.waiting.push(reply);
		this.mostWaiting = Math.max(this.mostWaiting, this.waiting.length);
		const release = (): void => {
			clearTimeout(this.timer);
			this.timer = undefined;
			for (const send of this.waiting.splice(0)) send();
		};
		if (this.waiting.length >= this.gate) release();
		else this.timer ??= setTimeout(release, this.gateMs);
	}
}

export const NODE: INode = {
	id: 'node-1',
	name: 'WhatsApp (wa_auth)',
	type: 'n8n-nodes-wa-auth.waAuth',
	typeVersion: 1,
	position: [0, 0],
	parameters: {},
};

/** n8n's httpRequestWithAuthentication for the waAuthApi credential, over a real socket. */
export function helpers(credentials: { baseUrl: string; apiKey: string }) {
	return {
		async httpRequestWithAuthentication(_type: string, options: IHttpRequestOptions) {
			const url = new URL(options.url);
			for (const [k, v] of Object.entries((options.qs ?? {}) as IDataObject)) {
				url.searchParams.set(k, String(v));
			}
			const response = await fetch(url, {
				method: options.method ?? 'GET',
				headers: { 'Content-Type': 'application/json', 'X-API-Key': credentials.apiKey },
				body: options.body === undefined ? undefined : JSON.stringify(options.body),
			});
			const text = await response.text();
			return { statusCode: response.status, body: text ? (JSON.parse(text) as unknown) : '' };
		},
	};
}
