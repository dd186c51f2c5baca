import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IDataObject } from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';

import { buildIntent } from '../nodes/WaAuth/intents';
import { outcomeIndex, SEND_OUTPUTS } from '../nodes/WaAuth/outcomes';
import { NODE } from './fakes';

const where = { node: NODE, itemIndex: 0 };

test('outputs are named and in the order of the issue', () => {
	assert.deepEqual(
		[...SEND_OUTPUTS],
		['Delivered', 'Queued', 'Token failure', 'Permission', 'Account', 'Failed'],
	);
});

test("each result line leaves by its outcome's output", () => {
	const cases: Array<[IDataObject, string]> = [
		[{ state: 'delivered', category: null }, 'Delivered'],
		[{ state: 'queued', category: 'rate_limited', not_before: 1 }, 'Queued'],
		[{ state: 'failed', category: 'token_expired' }, 'Token failure'],
		[{ state: 'failed', category: 'token_revoked' }, 'Token failure'],
		[{ state: 'failed', category: 'token_unavailable' }, 'Token failure'],
		[{ state: 'failed', category: 'insufficient_permission' }, 'Permission'],
		[{ state: 'failed', category: 'account_state' }, 'Account'],
		[{ state: 'failed', category: 'rate_limited', not_before: 1 }, 'Failed'],
		[{ state: 'maybe_delivered', category: 'transient' }, 'Failed'],
		[{ state: 'failed', category: 'invalid_request' }, 'Failed'],
		[{ state: 'expired', category: 'invalid_request' }, 'Failed'],
		[{}, 'Failed'],
	];
	for (const [line, output] of cases) {
		assert.equal(SEND_OUTPUTS[outcomeIndex(line)], output, JSON.stringify(line));
	}
});

test('fields make the intent serve takes', () => {
	const base = { to: '+15551234567', idempotencyKey: 'k-1' };
	assert.deepEqual(buildIntent({ ...base, messageType: 'text', text: 'hi' }, where), {
		to: '+15551234567',
		type: 'text',
		text: { body: 'hi', preview_url: false },
		idempotency_key: 'k-1',
	});
	assert.deepEqual(
		buildIntent(
			{
				...base,
				messageType: 'template',
				templateName: 'order_shipped',
				languageCode: 'en_US',
				templateComponents: '[{"type":"body","parameters":[{"type":"text","text":"42"}]}]',
				phoneNumberId: '109000000000001',
				consumer: 'orders',
			},
			where,
		),
		{
			to: '+15551234567',
			type: 'template',
			template: {
				name: 'order_shipped',
				language: { code: 'en_US' },
				components: [{ type: 'body', parameters: [{ type: 'text', text: '42' }] }],
			},
			idempotency_key: 'k-1',
			phone_number_id: '109000000000001',
			consumer: 'orders',
		},
	);
	assert.deepEqual(
		buildIntent(
			{
				...base,
				messageType: 'media',
				mediaType: 'document',
				mediaSource: 'link',
				media: 'https://example.com/a.pdf',
				caption: 'Invoice',
				filename: 'a.pdf',
			},
			where,
		),
		{
			to: '+15551234567',
			type: 'document',
			document: { link: 'https://example.com/a.pdf', caption: 'Invoice', filename: 'a.pdf' },
			idempotency_key: 'k-1',
		},
	);
	const buttons = buildIntent(
		{ ...base, messageType: 'interactive', bodyText: 'Confirm?', buttons: ['Yes', ' No ', ''] },
		where,
	);
	assert.deepEqual((buttons.interactive as { action: unknown }).action, {
		buttons: [
			{ type: 'reply', reply: { id: 'button-1', title: 'Yes' } },
			{ type: 'reply', reply: { id: 'button-2', title: 'No' } },
		],
	});
	// A raw intent's own key wins over the default expression's.
	assert.deepEqual(
		buildIntent(
			{
				...base,
				messageType: 'raw',
				intent: '{"to":"+1555","type":"text","text":{"body":"x"},"idempotency_key":"own"}',
			},
			where,
		).idempotency_key,
		'own',
	);
});

test('a bad field is a NodeOperationError naming it', () => {
	const bad = [
		{ messageType: 'text' as const, to: '', idempotencyKey: 'k', text: 'hi' },
		{ messageType: 'text' as const, to: '+1555', idempotencyKey: 'k', text: ' ' },
		{ messageType: 'raw' as const, to: '', idempotencyKey: 'k', intent: '{not json' },
		{ messageType: 'raw' as const, to: '', idempotencyKey: 'k', intent: '[1]' },
		{
			messageType: 'template' as const,
			to: '+1555',
			idempotencyKey: 'k',
			templateName: 't',
			languageCode: 'en',
			templateComponents: '{}',
		},
		{
			messageType: 'interactive' as const,
			to: '+1555',
			idempotencyKey: 'k',
			bodyText: 'b',
			buttons: ['a', 'b', 'c', 'd'],
		},
		{
			messageType: 'media' as const,
			to: '+1555',
			idempotencyKey: 'k',
			mediaType: 'hologram',
			media: 'x',
		},
		{ messageType: 'text' as const, to: '+1555', idempotencyKey: '', text: 'hi' },
	];
	for (const fields of bad) {
		assert.throws(() => buildIntent(fields, where), NodeOperationError, JSON.stringify(fields));
	}
});
