import type {
	IDataObject,
	IExecuteFunctions,
	INodeExecutionData,
	INodeType,
	INodeTypeDescription,
} from 'n8n-workflow';
import { NodeApiError, NodeConnectionTypes, NodeOperationError } from 'n8n-workflow';

import { DEFAULT_INTENT, DEFAULT_KEY, properties } from './description';
import { buildIntent, type MessageType, type SendFields } from './intents';
import { FAILED, outcomeIndex, SEND_OUTPUTS } from './outcomes';
import { Params } from './params';
import { CREDENTIAL, serveRequest } from './transport';

/** Send's defaults: intents per request to serve, and requests (batches) waiting on it at once. */
const BATCH_SIZE = 200;
const IN_FLIGHT = 2;

/** A whole number option of at least 1, else *fallback* (an unset or emptied option). */
function count(value: unknown, fallback: number): number {
	return typeof value === 'number' && Number.isFinite(value) && value >= 1
		? Math.floor(value)
		: fallback;
}

/** Send and Outbox: Replay have one output per outcome; the other operations one output. */
const OUTPUTS = `={{ ["send", "outboxReplay"].includes($parameter.operation) ? ${JSON.stringify(
	SEND_OUTPUTS.map((name) => ({ type: 'main', displayName: name })),
)} : ["main"] }}` as const;

function text(params: Params, name: string, i: number): string {
	const value = params.get(name, i, '');
	return value === undefined || value === null ? '' : String(value);
}

/**
 * The item's idempotency key. The default is computed here rather than by n8n's expression
 * engine: the same text, without an expression evaluation per item (most of a large batch's time).
 */
function idempotencyKey(ctx: IExecuteFunctions, params: Params, i: number): string {
	const raw = params.raw.idempotencyKey;
	if (raw === undefined || raw === DEFAULT_KEY) {
		return `${ctx.getWorkflow().id ?? ''}-${ctx.getExecutionId()}-${i}`;
	}
	return text(params, 'idempotencyKey', i);
}

/** The raw intent: the input item itself by default (again without an expression per item). */
function rawIntent(params: Params, items: INodeExecutionData[], i: number): unknown {
	const raw = params.raw.intent;
	if (raw === undefined || raw === DEFAULT_INTENT) return items[i].json;
	return params.get('intent', i);
}

function sendFields(
	ctx: IExecuteFunctions,
	params: Params,
	items: INodeExecutionData[],
	i: number,
): SendFields {
	const messageType = params.get('messageType', i) as MessageType;
	const options = params.get('options', i, {}) as IDataObject;
	const fields: SendFields = {
		messageType,
		to: messageType === 'raw' ? '' : text(params, 'to', i),
		idempotencyKey: idempotencyKey(ctx, params, i),
		phoneNumberId: typeof options.phoneNumberId === 'string' ? options.phoneNumberId : undefined,
		consumer: typeof options.consumer === 'string' ? options.consumer : undefined,
	};
	switch (messageType) {
		case 'text':
			fields.text = text(params, 'text', i);
			fields.previewUrl = params.get('previewUrl', i, false) as boolean;
			break;
		case 'template':
			fields.templateName = text(params, 'templateName', i);
			fields.languageCode = text(params, 'languageCode', i);
			fields.templateComponents = params.get('templateComponents', i, '');
			break;
		case 'media':
			fields.mediaType = text(params, 'mediaType', i);
			fields.mediaSource = text(params, 'mediaSource', i) === 'id' ? 'id' : 'link';
			fields.media = text(params, 'media', i);
			fields.caption = text(params, 'caption', i);
			fields.filename = fields.mediaType === 'document' ? text(params, 'filename', i) : '';
			break;
		case 'interactive':
			fields.bodyText = text(params, 'bodyText', i);
			fields.buttons = text(params, 'buttons', i).split(',');
			break;
		case 'raw':
			fields.intent = rawIntent(params, items, i);
			break;
	}
	return fields;
}

/** n8n's own errors as they are; anything else (a bug) as a NodeOperationError of the item. */
function nodeError(
	ctx: IExecuteFunctions,
	error: unknown,
	i: number,
): NodeApiError | NodeOperationError {
	if (error instanceof NodeApiError || error instanceof NodeOperationError) return error;
	return new NodeOperationError(ctx.getNode(), error as Error, { itemIndex: i });
}

function errorItem(error: Error, i: number): INodeExecutionData {
	const json: IDataObject = { ok: false, error: { message: error.message } };
	const body = (error as { errorResponse?: unknown }).errorResponse;
	if (error instanceof NodeApiError && typeof body === 'object' && body !== null) {
		Object.assign(json, body);
	}
	return { json, pairedItem: { item: i } };
}

/** Route serve's result lines (in input order) to the outputs, each paired with its item. */
function route(
	outputs: INodeExecutionData[][],
	results: unknown,
	items: number[],
	ctx: IExecuteFunctions,
): void {
	if (!Array.isArray(results) || results.length !== items.length) {
		throw new NodeApiError(ctx.getNode(), {
			message: 'serve answered a batch without one result per intent',
		});
	}
	results.forEach((result, n) => {
		const line = result as IDataObject;
		outputs[outcomeIndex(line)].push({ json: line, pairedItem: { item: items[n] } });
	});
}

async function send(
	ctx: IExecuteFunctions,
	items: INodeExecutionData[],
): Promise<INodeExecutionData[][]> {
	const outputs: INodeExecutionData[][] = SEND_OUTPUTS.map(() => []);
	const continueOnFail = ctx.continueOnFail();
	const batch: Array<{ intent: IDataObject; item: number }> = [];
	const params = new Params(ctx, items);
	const node = ctx.getNode();
	for (let i = 0; i < items.length; i++) {
		try {
			batch.push({
				intent: buildIntent(sendFields(ctx, params, items, i), { node, itemIndex: i }),
				item: i,
			});
		} catch (error) {
			const problem = nodeError(ctx, error, i);
			if (!continueOnFail) throw problem;
			outputs[FAILED].push(errorItem(problem, i));
		}
	}
	const options = ctx.getNodeParameter('options', 0, {}) as IDataObject;
	const size = count(options.batchSize, BATCH_SIZE);
	const inFlight = count(options.batchesInFlight, IN_FLIGHT);
	const chunks: Array<Array<{ intent: IDataObject; item: number }>> = [];
	for (let start = 0; start < batch.length; start += size) {
		chunks.push(batch.slice(start, start + size));
	}
	// Up to `inFlight` requests at once (two by default): n8n reads one answer while serve sends
	// the next batch. Without Continue On Fail, a failed request stops the batches not yet posted
	// (their idempotency keys make a retried execution safe for the ones that were in flight).
	const answers: Array<Promise<unknown>> = [];
	let stop = false;
	const post = async (n: number): Promise<unknown> => {
		const before = answers[n - inFlight];
		if (before !== undefined) await before.catch(() => undefined);
		if (stop) throw new NodeOperationError(ctx.getNode(), 'not sent: an earlier batch failed');
		const request = serveRequest(ctx, 'POST', '/send', {
			body: chunks[n].map((c) => c.intent),
			itemIndex: chunks[n][0].item,
		});
		request.catch(() => {
			stop = !continueOnFail;
		});
		return (await request).body.results;
	};
	for (let n = 0; n < chunks.length; n++) {
		const answer = post(n);
		answer.catch(() => undefined); // handled below, in order; never an unhandled rejection
		answers.push(answer);
	}
	for (let n = 0; n < chunks.length; n++) {
		const chunk = chunks[n];
		try {
			route(
				outputs,
				await answers[n],
				chunk.map((c) => c.item),
				ctx,
			);
		} catch (error) {
			if (!continueOnFail) {
				await Promise.allSettled(answers); // nothing left in flight behind the error
				throw nodeError(ctx, error, chunk[0].item);
			}
			for (const c of chunk) outputs[FAILED].push(errorItem(error as Error, c.item));
		}
	}
	return outputs;
}

async function perItem(
	ctx: IExecuteFunctions,
	items: INodeExecutionData[],
	operation: string,
): Promise<INodeExecutionData[][]> {
	const out: INodeExecutionData[] = [];
	for (let i = 0; i < items.length; i++) {
		try {
			if (operation === 'checkToken') {
				const warnDays = ctx.getNodeParameter('warnDays', i, 14) as number;
				const answer = await serveRequest(ctx, 'POST', '/check', {
					body: { warn_days: warnDays },
					itemIndex: i,
				});
				out.push({ json: answer.body, pairedItem: { item: i } });
			} else if (operation === 'classifyError') {
				let error = ctx.getNodeParameter('error', i) as unknown;
				if (typeof error === 'string') {
					try {
						error = JSON.parse(error) as unknown;
					} catch {
						throw new NodeOperationError(
							ctx.getNode(),
							'Classify Error: the error is not valid JSON',
							{
								itemIndex: i,
							},
						);
					}
				}
				const status = ctx.getNodeParameter('httpStatus', i, 0) as number;
				const answer = await serveRequest(ctx, 'POST', '/classify', {
					body: error,
					qs: status > 0 ? { status } : undefined,
					itemIndex: i,
				});
				out.push({ json: answer.body, pairedItem: { item: i } });
			} else if (operation === 'outboxList') {
				const state = ctx.getNodeParameter('state', i, '') as string;
				const limit = ctx.getNodeParameter('limit', i, 50) as number;
				const answer = await serveRequest(ctx, 'GET', '/outbox', {
					qs: state ? { state, limit } : { limit },
					itemIndex: i,
				});
				const rows = Array.isArray(answer.body.rows) ? (answer.body.rows as IDataObject[]) : [];
				for (const row of rows) out.push({ json: row, pairedItem: { item: i } });
			} else {
				throw new NodeOperationError(ctx.getNode(), `unknown operation ${operation}`, {
					itemIndex: i,
				});
			}
		} catch (error) {
			if (!ctx.continueOnFail()) throw nodeError(ctx, error, i);
			out.push(errorItem(error as Error, i));
		}
	}
	return [out];
}

async function replay(ctx: IExecuteFunctions): Promise<INodeExecutionData[][]> {
	const outputs: INodeExecutionData[][] = SEND_OUTPUTS.map(() => []);
	try {
		const answer = await serveRequest(ctx, 'POST', '/outbox/replay', {
			body: {
				limit: ctx.getNodeParameter('limit', 0, 50) as number,
				include_maybe_delivered: ctx.getNodeParameter('includeMaybeDelivered', 0, false) as boolean,
			},
			itemIndex: 0,
		});
		const results = Array.isArray(answer.body.results) ? answer.body.results : [];
		route(
			outputs,
			results,
			results.map(() => 0),
			ctx,
		);
	} catch (error) {
		if (!ctx.continueOnFail()) throw nodeError(ctx, error, 0);
		outputs[FAILED].push(errorItem(error as Error, 0));
	}
	return outputs;
}

export class WaAuth implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'WhatsApp (wa_auth)',
		name: 'waAuth',
		icon: { light: 'file:waAuth.svg', dark: 'file:waAuth.dark.svg' },
		group: ['output'],
		version: 1,
		subtitle: '={{$parameter["operation"]}}',
		description:
			'Send WhatsApp messages through wa-auth serve: one output per outcome, token, permission and account failures told apart',
		defaults: { name: 'WhatsApp (wa_auth)' },
		usableAsTool: true,
		inputs: [NodeConnectionTypes.Main],
		outputs: OUTPUTS,
		credentials: [{ name: CREDENTIAL, required: true }],
		properties,
	};

	async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
		const items = this.getInputData();
		const operation = this.getNodeParameter('operation', 0) as string;
		if (operation === 'send') return await send(this, items);
		if (operation === 'outboxReplay') return await replay(this);
		return await perItem(this, items, operation);
	}
}
