// The trigger against a loopback stand-in of serve's routes API (contract 5: POST, GET and
// DELETE /webhook/routes, same url => same id, the secret never answered back).
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { IDataObject, IHookFunctions, IWebhookFunctions } from 'n8n-workflow';
import { NodeApiError } from 'n8n-workflow';

import { WaAuthTrigger } from '../nodes/WaAuthTrigger/WaAuthTrigger.node';
import { kindOf, routeTypes, validSignature } from '../nodes/WaAuthTrigger/events';
import { type Call, FakeServe, helpers, KEY, NODE } from './fakes';

const WEBHOOK_URL = 'http://127.0.0.1:5678/webhook/0c6f2a4e/webhook';
const routes = new Map<string, IDataObject>();
const secrets = new Map<string, string>();
let serve: FakeServe;

before(async () => {
	let next = 1;
	serve = await new FakeServe((call: Call) => {
		if (call.path === '/webhook/routes' && call.method === 'POST') {
			const body = call.body as IDataObject;
			if (typeof body.secret !== 'string' || body.secret.length < 16) {
				return {
					status: 400,
					body: { ok: false, error: { message: 'secret: at least 16 characters' } },
				};
			}
			const existing = [...routes.values()].find((r) => r.url === body.url);
			const id = existing ? String(existing.id) : `route-${next++}`;
			const { secret, ...rest } = body;
			routes.set(id, { id, ...rest });
			secrets.set(id, secret);
			return { status: 201, body: routes.get(id) };
		}
		if (call.path === '/webhook/routes' && call.method === 'GET') {
			return { status: 200, body: { routes: [...routes.values()] } };
		}
		const match = /^\/webhook\/routes\/(.+)$/.exec(call.path);
		if (match && call.method === 'DELETE') {
			if (!routes.delete(decodeURIComponent(match[1]))) {
				return { status: 404, body: { ok: false, error: { message: 'no such route' } } };
			}
			return { status: 204 };
		}
		return undefined;
	}).start();
});
after(async () => serve.stop());

function hooks(staticData: IDataObject, parameters: IDataObject, key = KEY): IHookFunctions {
	const credentials = { baseUrl: serve.url, apiKey: key };
	return {
		getWorkflowStaticData: () => staticData,
		getNodeWebhookUrl: () => WEBHOOK_URL,
		getNodeParameter: (name: string, fallback?: unknown) => parameters[name] ?? fallback,
		getWorkflow: () => ({ id: 'wf1' }),
		getNode: () => NODE,
		getCredentials: async () => credentials,
		helpers: helpers(credentials),
	} as unknown as IHookFunctions;
}

const methods = new WaAuthTrigger().webhookMethods.default;

test('activation registers one route (re-activation keeps it), deactivation removes it', async () => {
	const data: IDataObject = {};
	const ctx = hooks(data, {
		kinds: ['messages', 'failures'],
		phoneNumberIds: '109000000000001, 109000000000002',
	});
	assert.equal(await methods.checkExists.call(ctx), false);
	assert.equal(await methods.create.call(ctx), true);
	const id = data.routeId as string;
	assert.equal(typeof data.secret, 'string');
	assert.ok((data.secret as string).length >= 32);
	assert.deepEqual(routes.get(id), {
		id,
		url: WEBHOOK_URL,
		name: 'n8n workflow wf1',
		types: ['error', 'message', 'status'],
		phone_number_ids: ['109000000000001', '109000000000002'],
	});
	assert.equal(await methods.checkExists.call(ctx), true);
	// n8n re-activating the workflow: the same url, the same route.
	assert.equal(await methods.create.call(ctx), true);
	assert.equal(data.routeId, id);
	assert.equal(routes.size, 1);
	assert.equal(secrets.get(id), data.secret);
	assert.equal(await methods.delete.call(ctx), true);
	assert.equal(routes.size, 0);
	assert.equal(data.routeId, undefined);
	// A route already gone (removed by hand) is no error.
	data.routeId = 'route-gone';
	assert.equal(await methods.delete.call(ctx), true);
});

test('a wrong key fails activation with a NodeApiError that does not carry the key', async () => {
	const wrong = 'canary-wrong-trigger-key-123456';
	const error = await methods.create.call(hooks({}, { kinds: ['messages'] }, wrong)).then(
		() => assert.fail('no error'),
		(e: unknown) => e,
	);
	assert.ok(error instanceof NodeApiError);
	assert.ok(!JSON.stringify([error, error.message, error.description]).includes(wrong));
});

function delivery(
	staticData: IDataObject,
	kinds: string[],
	body: Buffer,
	signature: string | undefined,
	workflowId = 'wf1',
) {
	const answer: { status?: number; body?: unknown } = {};
	const response = {
		status(code: number) {
			answer.status = code;
			return this;
		},
		json(value: unknown) {
			answer.body = value;
			return this;
		},
	};
	const ctx = {
		getWorkflowStaticData: () => staticData,
		getRequestObject: () => ({ rawBody: body, body: JSON.parse(body.toString()) as unknown }),
		getResponseObject: () => response,
		getHeaderData: () => (signature === undefined ? {} : { 'x-wa-auth-signature-256': signature }),
		getNodeParameter: (name: string) => ({ kinds })[name],
		getNode: () => NODE,
		getWorkflow: () => ({ id: workflowId }),
	} as unknown as IWebhookFunctions;
	return { ctx, answer };
}

function sign(secret: string, body: Buffer): string {
	return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

test("every delivery is verified, deduplicated by key, and emitted on its kind's output", async () => {
	const data: IDataObject = { routeId: 'r', secret: 'a-secret-of-at-least-16-chars', keys: [] };
	const trigger = new WaAuthTrigger();
	const forward = (key: string, type: string, category: string | null = null) =>
		Buffer.from(
			JSON.stringify({
				key,
				type,
				field: 'messages',
				phone_number_id: '1',
				category,
				event: { raw: {} },
			}),
		);
	const kinds = ['messages', 'statuses', 'failures'];

	const message = forward('k1', 'message');
	let { ctx, answer } = delivery(data, kinds, message, sign(data.secret as string, message));
	let out = await trigger.webhook.call(ctx);
	assert.deepEqual(
		out.workflowData?.map((o) => o.length),
		[1, 0, 0],
	);
	assert.equal(answer.status, undefined);

	// The same event again: answered, not emitted twice.
	({ ctx } = delivery(data, kinds, message, sign(data.secret as string, message)));
	out = await trigger.webhook.call(ctx);
	assert.equal(out.workflowData, undefined);

	const failed = forward('k2', 'status', 'token_expired');
	({ ctx } = delivery(data, kinds, failed, sign(data.secret as string, failed)));
	out = await trigger.webhook.call(ctx);
	assert.deepEqual(
		out.workflowData?.map((o) => o.length),
		[0, 0, 1],
	);
	assert.equal(out.workflowData?.[2][0].json.category, 'token_expired');

	// Tampered, signed with another secret, unsigned: 401 and nothing runs.
	const tampered = Buffer.from(failed.toString().replace('token_expired', 'transient'));
	for (const [body, signature] of [
		[tampered, sign(data.secret as string, failed)],
		[forward('k3', 'message'), sign('another-secret-0123456789', forward('k3', 'message'))],
		[forward('k4', 'message'), undefined],
		[forward('k5', 'message'), 'sha256=zz'],
	] as Array<[Buffer, string | undefined]>) {
		({ ctx, answer } = delivery(data, kinds, body, signature));
		out = await trigger.webhook.call(ctx);
		assert.deepEqual(out, { noWebhookResponse: true });
		assert.equal(answer.status, 401);
	}
	// A kind not chosen: answered 2xx (serve does not retry it), nothing runs.
	const account = forward('k6', 'account_update');
	({ ctx } = delivery(data, kinds, account, sign(data.secret as string, account)));
	out = await trigger.webhook.call(ctx);
	assert.equal(out.workflowData, undefined);
});

test('a redelivery is emitted once though n8n lost the static data that remembered it', async () => {
	// n8n 2.x saves the webhook's static data, then the execution saves its older copy over it.
	const fresh = (): IDataObject => ({
		routeId: 'r',
		secret: 'a-secret-of-at-least-16-chars',
		keys: [],
	});
	const trigger = new WaAuthTrigger();
	const body = Buffer.from(JSON.stringify({ key: 'once', type: 'message', event: {} }));
	const emitted = [];
	for (const workflowId of ['wf-lost', 'wf-lost', 'wf-other']) {
		const data = fresh();
		const { ctx } = delivery(data, ['messages'], body, sign(data.secret as string, body), workflowId);
		const out = await trigger.webhook.call(ctx);
		emitted.push(out.workflowData === undefined ? 'duplicate' : 'emitted');
	}
	// Another workflow's trigger has its own route: the same event is its to emit too.
	assert.deepEqual(emitted, ['emitted', 'duplicate', 'emitted']);
});

test('kinds, route types and signatures', () => {
	assert.equal(kindOf({ type: 'status', category: null }), 'statuses');
	assert.equal(kindOf({ type: 'status', category: 'account_state' }), 'failures');
	assert.equal(kindOf({ type: 'error' }), 'failures');
	assert.equal(kindOf({ type: 'phone_number_quality_update' }), 'account');
	assert.equal(kindOf({ type: 'unknown' }), 'other');
	assert.deepEqual(routeTypes(['statuses']), ['status']);
	assert.deepEqual(routeTypes(['account']), [
		'account_review_update',
		'account_update',
		'business_capability_update',
		'message_template_status_update',
		'phone_number_quality_update',
		'security',
	]);
	const body = Buffer.from('{"a":1}');
	assert.equal(validSignature('s'.repeat(16), body, sign('s'.repeat(16), body)), true);
	assert.equal(
		validSignature('s'.repeat(16), body, sign('s'.repeat(16), body).toUpperCase()),
		false,
	);
	assert.equal(validSignature('s'.repeat(16), body, ['x']), false);
});
