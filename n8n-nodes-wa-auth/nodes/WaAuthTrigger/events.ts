import { createHmac, timingSafeEqual } from 'crypto';
import type { IDataObject } from 'n8n-workflow';

/** The kinds of event the trigger can emit, each on an output of its own, in this order. */
export const KINDS = ['messages', 'statuses', 'failures', 'account', 'other'] as const;
export type Kind = (typeof KINDS)[number];

export const KIND_NAMES: Record<Kind, string> = {
	messages: 'Messages',
	statuses: 'Statuses',
	failures: 'Failures',
	account: 'Account',
	other: 'Other',
};

/** The event types (serve's `type` of a webhook event) that belong to the account output. */
const ACCOUNT_TYPES = [
	'account_update',
	'account_review_update',
	'phone_number_quality_update',
	'business_capability_update',
	'security',
	'message_template_status_update',
];

const TYPES: Record<Kind, string[]> = {
	messages: ['message'],
	statuses: ['status'],
	failures: ['status', 'error'],
	account: ACCOUNT_TYPES,
	other: ['unknown'],
};

/** The chosen kinds in output order (unknown names dropped, each once). */
export function chosenKinds(kinds: unknown): Kind[] {
	const list = Array.isArray(kinds) ? kinds : [];
	return KINDS.filter((kind) => list.includes(kind));
}

/** The `types` filter of the route for the chosen kinds (serve forwards nothing else). */
export function routeTypes(kinds: Kind[]): string[] {
	const types = new Set<string>();
	for (const kind of kinds) for (const type of TYPES[kind]) types.add(type);
	return [...types].sort();
}

/**
 * The kind of one forward (contract: `{key, type, field, phone_number_id, business_account_id,
 * category, event}`): a message, a status (one with a category is a failed status: Failures),
 * an error, an account event, or anything else.
 */
export function kindOf(forward: IDataObject): Kind {
	const type = forward.type;
	if (type === 'message') return 'messages';
	if (type === 'status') return forward.category ? 'failures' : 'statuses';
	if (type === 'error') return 'failures';
	if (typeof type === 'string' && ACCOUNT_TYPES.includes(type)) return 'account';
	return 'other';
}

/**
 * Whether *header* is `sha256=<hex HMAC-SHA256(secret, body)>` of these exact bytes.
 * Compared in constant time; anything malformed is simply not valid.
 */
export function validSignature(secret: string, body: Buffer, header: unknown): boolean {
	if (typeof header !== 'string' || !header.startsWith('sha256=')) return false;
	const given = header.slice('sha256='.length).trim().toLowerCase();
	if (!/^[0-9a-f]{64}$/.test(given)) return false;
	const expected = createHmac('sha256', secret).update(body).digest();
	return timingSafeEqual(expected, Buffer.from(given, 'hex'));
}

/** A list of IDs from a comma- or space-separated field. */
export function idList(value: unknown): string[] {
	if (typeof value !== 'string') return [];
	return value
		.split(/[\s,]+/)
		.map((id) => id.trim())
		.filter((id) => id !== '');
}

/**
 * The event keys each trigger (workflow and node) emitted in this n8n process, newest last.
 *
 * The workflow's static data alone does not deduplicate in n8n 2.x: it is saved after the
 * webhook answers, but the execution the delivery starts loaded the static data before that
 * and saves its own copy when it ends, so the key just remembered is lost. Checking a key and
 * remembering it here is one synchronous step: two deliveries of one event cannot both pass.
 */
export class SeenKeys {
	private readonly scopes = new Map<string, Set<string>>();

	constructor(private readonly limit: number) {}

	/** Remember *key* for *scope*; false when it was already there (a redelivery). */
	add(scope: string, key: string): boolean {
		let keys = this.scopes.get(scope);
		if (keys === undefined) {
			keys = new Set();
			this.scopes.set(scope, keys);
		}
		if (keys.has(key)) return false;
		keys.add(key);
		if (keys.size > this.limit) keys.delete(keys.values().next().value as string);
		return true;
	}

	/** Forget *scope*'s keys (its route was removed). */
	forget(scope: string): void {
		this.scopes.delete(scope);
	}
}
