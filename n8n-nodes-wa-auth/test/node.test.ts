import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { IDataObject, IExecuteFunctions, INodeExecutionData } from 'n8n-workflow';
import { NodeApiError, NodeOperationError } from 'n8n-workflow';

import { WaAuth } from '../nodes/WaAuth/WaAuth.node';
import { SEND_OUTPUTS } from '../nodes/WaAuth/outcomes';
import { type Call, FakeServe, helpers, KEY, NODE } from './fakes';

/** serve's result line for an intent, its outcome chosen by the recipient (the test's marker). */
function result(intent: IDataObject, line: number): IDataObject {
	const to = String(intent.to);
	const outcome: Record<string, [string, string | null]> = {
		'+10000000001': ['delivered', null],
		'+10000000002': ['queued', 'rate_limited'],
		'+10000000003': ['failed', 'token_revoked'],
		'+10000000004': ['failed', 'insufficient_permission'],
		'+10000000005': ['failed', 'account_state'],
		'+10000000006': ['maybe_delivered', 'transient'],
	};
	const [state, category] = outcome[to] ?? ['failed', 'invalid_request'];
	return {
		ok: state === 'delivered',
		state,
		category,
		line,
		idempotency_key: intent.idempotency_key,
		to,
	};
}

let serve: FakeServe;
before(async () => {
	serve = await new FakeServe((call: Call) => {
		if (call.method === 'POST' && call.path === '/send') {
			const intents = call.body as IDataObject[];
			if (intents[0].to === '+19999999999') {
				return { status: 400, body: { ok: false, error: { message: 'refused batch' } } };
			}
			return {
				status: 200,
				body: {
					ok: false,
					exit_code: 4,
					summary: {},
					results: intents.map((i, n) => result(i, n + 1)),
				},
			};
		}
		if (call.method === 'POST' && call.path === '/check') {
			return { status: 200, body: { ok: true, exit_code: 0, category: null, valid: true } };
		}
		if (call.method === 'POST' && call.path === '/classify') {
			return { status: 200, body: { ok: false, category: 'token_expired', status: call.query } };
		}
		if (call.method === 'GET' && call.path === '/outbox') {
			return {
				status: 200,
				body: {
					ok: true,
					rows: [{ idempotency_key: 'a' }, { idempotency_key: 'b' }],
					query: call.query,
				},
			};
		}
		if (call.method === 'POST' && call.path === '/outbox/replay') {
			return {
				status: 200,
				body: {
					ok: true,
					results: [result({ to: '+10000000001' }, 1), result({ to: '+10000000003' }, 2)],
				},
			};
		}
		return undefined;
	}).start();
});
after(async () => serve.stop());

function context(
	items: IDataObject[],
	parameters: IDataObject | ((name: string, i: number) => unknown),
	options: { key?: string; continueOnFail?: boolean } = {},
): IExecuteFunctions {
	const read = typeof parameters === 'function' ? parameters : (name: string) => parameters[name];
	const credentials = { baseUrl: `${serve.url}/`, apiKey: options.key ?? KEY };
	return {
		getInputData: () => items.map((json) => ({ json })),
		getNodeParameter: (name: string, i: number, fallback?: unknown) => read(name, i) ?? fallback,
		getNode: () => ({ ...NODE, parameters: { idempotencyKey: '=set by the test' } }),
		getWorkflow: () => ({ id: 'wf9' }),
		getExecutionId: () => '321',
		continueOnFail: () => options.continueOnFail ?? false,
		getCredentials: async () => credentials,
		helpers: helpers(credentials),
	} as unknown as IExecuteFunctions;
}

async function run(ctx: IExecuteFunctions): Promise<INodeExecutionData[][]> {
	return await new WaAuth().execute.call(ctx);
}

const sendText =
	(to: (i: number) => string, extra: IDataObject = {}) =>
	(name: string, i: number) =>
		({
			operation: 'send',
			messageType: 'text',
			to: to(i),
			text: `hello ${i}`,
			idempotencyKey: `wf-exec-${i}`,
			options: extra,
		})[name];

test('Send posts the items in batches and routes each result to its outcome, paired with its item', async () => {
	serve.calls = [];
	const items = Array.from({ length: 450 }, (_, i) => ({ n: i }));
	const outputs = await run(
		context(
			items,
			sendText((i) => `+1000000000${(i % 7) + 1}`, { batchSize: 200 }),
		),
	);
	const sends = serve.calls.filter((c) => c.path === '/send');
	assert.deepEqual(
		sends.map((c) => (c.body as unknown[]).length),
		[200, 200, 50],
	);
	assert.equal(outputs.length, SEND_OUTPUTS.length);
	const expected = [1, 2, 3, 4, 5, 6, 6]; // recipient 7 is invalid_request: Failed, as is 6 (maybe_delivered)
	const counts = SEND_OUTPUTS.map(() => 0);
	for (let i = 0; i < 450; i++) counts[expected[i % 7] - 1]++;
	assert.deepEqual(
		outputs.map((o) => o.length),
		counts,
	);
	for (const output of outputs) {
		for (const item of output) {
			const paired = (item.pairedItem as { item: number }).item;
			assert.equal(item.json.idempotency_key, `wf-exec-${paired}`);
		}
	}
	// serve's JSON goes out unchanged.
	assert.deepEqual(
		outputs[0][0].json,
		result({ to: '+10000000001', idempotency_key: 'wf-exec-0' }, 1),
	);
});

test('a refused batch stops the batches not yet posted (two are in flight at most)', async () => {
	serve.calls = [];
	const refused = (i: number) => (i === 0 ? '+19999999999' : '+10000000001');
	const items = Array.from({ length: 6 }, (_, i) => ({ n: i }));
	const error = await run(context(items, sendText(refused, { batchSize: 1 }))).then(
		() => assert.fail('no error'),
		(e: unknown) => e,
	);
	assert.ok(error instanceof NodeApiError);
	assert.match(String((error as Error).message), /refused batch/);
	const sends = serve.calls.filter((c) => c.path === '/send');
	assert.ok(sends.length <= 2, `${sends.length} batches posted`);
	// With Continue On Fail, every other batch goes out, and the outputs keep the items' order.
	serve.calls = [];
	const outputs = await run(
		context(items, sendText(refused, { batchSize: 1 }), { continueOnFail: true }),
	);
	assert.equal(serve.calls.filter((c) => c.path === '/send').length, 6);
	assert.deepEqual(
		outputs[0].map((item) => (item.pairedItem as { item: number }).item),
		[1, 2, 3, 4, 5],
	);
	assert.deepEqual(
		outputs[5].map((item) => (item.pairedItem as { item: number }).item),
		[0],
	);
});

test('Batches in Flight: that many requests wait on serve at once, never more', async () => {
	const items = Array.from({ length: 12 }, (_, i) => ({ n: i }));
	const send = async (inFlight: number | undefined, gate: number, gateMs: number) => {
		serve.calls = [];
		serve.gate = gate;
		serve.gateMs = gateMs;
		serve.mostWaiting = 0;
		try {
			const outputs = await run(
				context(
					items,
					sendText(() => '+10000000001', { batchSize: 1, batchesInFlight: inFlight }),
				),
			);
			assert.deepEqual(
				outputs[0].map((item) => (item.pairedItem as { item: number }).item),
				items.map((_, i) => i),
			);
		} finally {
			serve.gate = 0;
		}
		assert.equal(serve.calls.filter((c) => c.path === '/send').length, 12);
		return serve.mostWaiting;
	};
	for (const [inFlight, expected] of [
		[undefined, 2],
		[1, 1],
		[3, 3],
		[4, 4],
	] as const) {
		// Answers held until `expected` requests wait: the node had that many open at once...
		assert.equal(await send(inFlight, expected, 2000), expected, `${String(inFlight)} reached`);
		// ...and never more: held until one more waits (never, a short wait instead).
		const most = await send(inFlight, expected + 1, 30);
		assert.ok(most <= expected, `${String(inFlight)}: ${most} requests open at once`);
	}
});

test("the default idempotency key is the workflow's, the execution's and the item's", async () => {
	serve.calls = [];
	const ctx = context(
		[{}, {}],
		sendText(() => '+10000000001'),
	);
	(ctx as unknown as { getNode: () => unknown }).getNode = () => NODE; // the default kept
	await run(ctx);
	const keys = (serve.calls[0].body as IDataObject[]).map((intent) => intent.idempotency_key);
	assert.deepEqual(keys, ['wf9-321-0', 'wf9-321-1']);
});

test('a raw intent defaults to the input item itself', async () => {
	serve.calls = [];
	const intent = {
		to: '+10000000001',
		type: 'text',
		text: { body: 'hi' },
		idempotency_key: 'own-1',
	};
	const ctx = context([intent], { operation: 'send', messageType: 'raw' });
	(ctx as unknown as { getNode: () => unknown }).getNode = () => NODE; // the defaults kept
	const outputs = await run(ctx);
	assert.deepEqual(serve.calls[0].body, [intent]);
	assert.equal(outputs[0].length, 1);
});

test('a bad parameter is a NodeOperationError; with Continue On Fail its item leaves by Failed', async () => {
	const params = sendText((i) => (i === 1 ? '' : '+10000000001'));
	await assert.rejects(run(context([{}, {}, {}], params)), NodeOperationError);
	serve.calls = [];
	const outputs = await run(context([{}, {}, {}], params, { continueOnFail: true }));
	assert.equal(outputs[0].length, 2);
	assert.equal(outputs[5].length, 1);
	assert.deepEqual(outputs[5][0].pairedItem, { item: 1 });
	assert.match(String((outputs[5][0].json.error as IDataObject).message), /recipient/);
	assert.equal(serve.calls.length, 1);
});

test("serve's 4xx is a NodeApiError, and the API key appears nowhere (canary)", async () => {
	const params = sendText(() => '+10000000001');
	const wrong = 'canary-wrong-key-ZZZZ-9876543210';
	const error = await run(context([{}], params, { key: wrong })).then(
		() => assert.fail('no error'),
		(e: unknown) => e,
	);
	assert.ok(error instanceof NodeApiError);
	assert.equal(error.httpCode, '401');
	assert.match(error.message, /wrong API key/);
	const outputs = await run(context([{}, {}], params, { key: wrong, continueOnFail: true }));
	assert.equal(outputs[5].length, 2);
	const everything = JSON.stringify([
		error,
		error.message,
		error.description,
		error.context,
		outputs,
	]);
	for (const secret of [wrong, KEY]) assert.ok(!everything.includes(secret), 'a key leaked');
});

test('no answer from serve is a NodeApiError naming the address, never the key', async () => {
	const ctx = context(
		[{}],
		sendText(() => '+10000000001'),
	);
	(ctx as unknown as { getCredentials: () => Promise<IDataObject> }).getCredentials = async () => ({
		baseUrl: 'http://127.0.0.1:9',
		apiKey: KEY,
	});
	(ctx as unknown as { helpers: unknown }).helpers = helpers({
		baseUrl: 'http://127.0.0.1:9',
		apiKey: KEY,
	});
	const error = await run(ctx).then(
		() => assert.fail('no error'),
		(e: unknown) => e,
	);
	assert.ok(error instanceof NodeApiError);
	assert.match(String(error.description), /127\.0\.0\.1:9/);
	assert.ok(!JSON.stringify([error, error.message, error.description]).includes(KEY));
});

test('Check token, Classify error and Outbox list: one request per item, serve JSON as the item', async () => {
	serve.calls = [];
	const check = await run(context([{}], { operation: 'checkToken', warnDays: 7 }));
	assert.deepEqual(check, [
		[{ json: { ok: true, exit_code: 0, category: null, valid: true }, pairedItem: { item: 0 } }],
	]);
	assert.deepEqual(serve.calls[0].body, { warn_days: 7 });
	const graph = { error: { code: 190, error_subcode: 463, message: 'Session has expired' } };
	const classified = await run(
		context([{}], { operation: 'classifyError', error: JSON.stringify(graph), httpStatus: 401 }),
	);
	assert.equal(classified[0][0].json.category, 'token_expired');
	assert.deepEqual(serve.calls[1].body, graph);
	assert.equal(serve.calls[1].query, 'status=401');
	const rows = await run(context([{}], { operation: 'outboxList', state: 'failed', limit: 5 }));
	assert.deepEqual(
		rows[0].map((r) => r.json.idempotency_key),
		['a', 'b'],
	);
	assert.equal(serve.calls[2].query, 'state=failed&limit=5');
	await assert.rejects(
		run(context([{}], { operation: 'classifyError', error: '{oops' })),
		NodeOperationError,
	);
});

test('Outbox replay routes each replayed intent to its outcome', async () => {
	const outputs = await run(
		context([{}], { operation: 'outboxReplay', limit: 10, includeMaybeDelivered: false }),
	);
	assert.deepEqual(
		outputs.map((o) => o.length),
		[1, 0, 1, 0, 0, 0],
	);
});

test('the outputs expression gives six outputs for Send and Replay, one otherwise', () => {
	const outputs = new WaAuth().description.outputs as string;
	const body = outputs.slice(3, -2);
	const evaluate = (operation: string) =>
		// eslint-disable-next-line @typescript-eslint/no-implied-eval
		new Function('$parameter', `return (${body});`)({ operation }) as unknown[];
	assert.deepEqual(
		(evaluate('send') as Array<{ displayName: string }>).map((o) => o.displayName),
		[...SEND_OUTPUTS],
	);
	assert.equal(evaluate('outboxReplay').length, 6);
	assert.deepEqual(evaluate('checkToken'), ['main']);
});
