import type { IDataObject } from 'n8n-workflow';

/** Send's outputs, in this order: one per outcome of an intent. */
export const SEND_OUTPUTS = [
	'Delivered',
	'Queued',
	'Token failure',
	'Permission',
	'Account',
	'Failed',
] as const;

export const DELIVERED = 0;
export const QUEUED = 1;
export const TOKEN_FAILURE = 2;
export const PERMISSION = 3;
export const ACCOUNT = 4;
export const FAILED = 5;

/** serve's categories of a token that cannot send (expired, revoked, none to be had). */
const TOKEN_CATEGORIES = new Set(['token_expired', 'token_revoked', 'token_unavailable']);

/**
 * The output an intent's result line leaves by, read from serve's JSON as it is.
 *
 * `state` first (delivered; queued: the outbox holds it until `not_before`), then the
 * failure's `category`; every other final state (failed, maybe_delivered, expired) is Failed.
 */
export function outcomeIndex(result: IDataObject): number {
	const state = result.state;
	if (state === 'delivered') return DELIVERED;
	if (state === 'queued') return QUEUED;
	const category = typeof result.category === 'string' ? result.category : null;
	if (category !== null && TOKEN_CATEGORIES.has(category)) return TOKEN_FAILURE;
	if (category === 'insufficient_permission') return PERMISSION;
	if (category === 'account_state') return ACCOUNT;
	return FAILED;
}
