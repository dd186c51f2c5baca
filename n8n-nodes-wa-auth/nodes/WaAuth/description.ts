import type { INodeProperties } from 'n8n-workflow';

import { MEDIA_TYPES } from './intents';

const send = { show: { operation: ['send'] } };
const fields = (messageType: string[]) => ({
	show: { operation: ['send'], messageType },
});

/** The idempotency key's default: the workflow, the execution and the item. */
export const DEFAULT_KEY = '={{ $workflow.id }}-{{ $execution.id }}-{{ $itemIndex }}';

/** The raw intent's default: the input item itself. */
export const DEFAULT_INTENT = '={{ JSON.stringify($json) }}';

/** The node's parameters: the operation, then each operation's fields. */
export const properties: INodeProperties[] = [
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		default: 'send',
		options: [
			{
				name: 'Check Token',
				value: 'checkToken',
				description: "Check the access token and the number's health",
				action: 'Check the token',
			},
			{
				name: 'Classify Error',
				value: 'classifyError',
				description: "Classify a Graph API error or a previous node's error output",
				action: 'Classify an error',
			},
			{
				name: 'Outbox: List',
				value: 'outboxList',
				description: "List the outbox's rows",
				action: 'List the outbox',
			},
			{
				name: 'Outbox: Replay',
				value: 'outboxReplay',
				description: 'Send again what the outbox holds, one output per outcome',
				action: 'Replay the outbox',
			},
			{
				name: 'Send',
				value: 'send',
				description: 'Send a message, one output per outcome',
				action: 'Send a message',
			},
		],
	},
	{
		displayName: 'Message Type',
		name: 'messageType',
		type: 'options',
		displayOptions: send,
		default: 'text',
		options: [
			{ name: 'Media', value: 'media' },
			{ name: 'Raw Intent JSON', value: 'raw' },
			{ name: 'Reply Buttons', value: 'interactive' },
			{ name: 'Template', value: 'template' },
			{ name: 'Text', value: 'text' },
		],
	},
	{
		displayName: 'To',
		name: 'to',
		type: 'string',
		displayOptions: fields(['text', 'template', 'media', 'interactive']),
		default: '',
		placeholder: '+15551234567',
		description: "The recipient's phone number, in international format",
		required: true,
	},
	{
		displayName: 'Text',
		name: 'text',
		type: 'string',
		typeOptions: { rows: 3 },
		displayOptions: fields(['text']),
		default: '',
		required: true,
	},
	{
		displayName: 'Preview URL',
		name: 'previewUrl',
		type: 'boolean',
		displayOptions: fields(['text']),
		default: false,
		description: 'Whether WhatsApp shows a preview of the first link in the text',
	},
	{
		displayName: 'Template Name',
		name: 'templateName',
		type: 'string',
		displayOptions: fields(['template']),
		default: '',
		required: true,
	},
	{
		displayName: 'Language Code',
		name: 'languageCode',
		type: 'string',
		displayOptions: fields(['template']),
		default: 'en_US',
		required: true,
	},
	{
		displayName: 'Components (JSON)',
		name: 'templateComponents',
		type: 'json',
		displayOptions: fields(['template']),
		default: '',
		description: "The template's components as Meta takes them (a JSON array); empty for none",
	},
	{
		displayName: 'Media Type',
		name: 'mediaType',
		type: 'options',
		displayOptions: fields(['media']),
		default: 'image',
		options: MEDIA_TYPES.map((t) => ({ name: t.charAt(0).toUpperCase() + t.slice(1), value: t })),
	},
	{
		displayName: 'Media Source',
		name: 'mediaSource',
		type: 'options',
		displayOptions: fields(['media']),
		default: 'link',
		options: [
			{ name: 'Link', value: 'link' },
			{ name: 'Uploaded Media ID', value: 'id' },
		],
	},
	{
		displayName: 'Media',
		name: 'media',
		type: 'string',
		displayOptions: fields(['media']),
		default: '',
		description: 'The HTTPS link of the media, or the ID of media uploaded to Meta',
		required: true,
	},
	{
		displayName: 'Caption',
		name: 'caption',
		type: 'string',
		displayOptions: fields(['media']),
		default: '',
	},
	{
		displayName: 'File Name',
		name: 'filename',
		type: 'string',
		displayOptions: {
			show: { operation: ['send'], messageType: ['media'], mediaType: ['document'] },
		},
		default: '',
	},
	{
		displayName: 'Body Text',
		name: 'bodyText',
		type: 'string',
		typeOptions: { rows: 2 },
		displayOptions: fields(['interactive']),
		default: '',
		required: true,
	},
	{
		displayName: 'Button Titles',
		name: 'buttons',
		type: 'string',
		displayOptions: fields(['interactive']),
		default: '',
		placeholder: 'Yes, No',
		description: 'One to three reply button titles, separated by commas',
		required: true,
	},
	{
		displayName: 'Intent (JSON)',
		name: 'intent',
		type: 'json',
		displayOptions: fields(['raw']),
		default: DEFAULT_INTENT,
		description:
			'A wa_auth intent: to, type, the object named by type (as Meta takes it), and optionally idempotency_key, phone_number_id, consumer, not_after',
	},
	{
		displayName: 'Idempotency Key',
		name: 'idempotencyKey',
		type: 'string',
		displayOptions: send,
		default: DEFAULT_KEY,
		description:
			"Meta echoes it in status webhooks and serve never sends one key twice; the default ties it to this execution and item. A raw intent's own key wins.",
	},
	{
		displayName: 'Options',
		name: 'options',
		type: 'collection',
		placeholder: 'Add Option',
		displayOptions: send,
		default: {},
		options: [
			{
				displayName: 'Batch Size',
				name: 'batchSize',
				type: 'number',
				typeOptions: { minValue: 1, maxValue: 1000 },
				default: 200,
				description: 'How many items go to serve in one request',
			},
			{
				displayName: 'Batches in Flight',
				name: 'batchesInFlight',
				type: 'number',
				typeOptions: { minValue: 1, maxValue: 16 },
				default: 2,
				description:
					"How many requests (batches) wait on serve at once. Batch size times this should exceed serve's --concurrency (64 by default) so that its sends never wait on n8n.",
			},
			{
				displayName: 'Consumer',
				name: 'consumer',
				type: 'string',
				default: '',
				description: 'A label of who sends (this workflow), carried in events and the outbox',
			},
			{
				displayName: 'Phone Number ID',
				name: 'phoneNumberId',
				type: 'string',
				default: '',
				description: "The sender's phone number ID; empty uses serve's",
			},
		],
	},
	{
		displayName: 'Warn Days',
		name: 'warnDays',
		type: 'number',
		displayOptions: { show: { operation: ['checkToken'] } },
		default: 14,
		description: 'Report the token as expiring when it expires within this many days',
	},
	{
		displayName: 'Error (JSON)',
		name: 'error',
		type: 'json',
		displayOptions: { show: { operation: ['classifyError'] } },
		default: '={{ JSON.stringify($json) }}',
		description: "A Graph API error body, or the item of a node's error output",
	},
	{
		displayName: 'HTTP Status',
		name: 'httpStatus',
		type: 'number',
		displayOptions: { show: { operation: ['classifyError'] } },
		default: 0,
		description: 'The HTTP status of the error, when known (0: unknown)',
	},
	{
		displayName: 'State',
		name: 'state',
		type: 'options',
		displayOptions: { show: { operation: ['outboxList'] } },
		default: '',
		options: [
			{ name: 'Any', value: '' },
			{ name: 'Delivered', value: 'delivered' },
			{ name: 'Expired', value: 'expired' },
			{ name: 'Failed', value: 'failed' },
			{ name: 'Maybe Delivered', value: 'maybe_delivered' },
			{ name: 'Pending', value: 'pending' },
			{ name: 'Queued', value: 'queued' },
			{ name: 'Sending', value: 'sending' },
		],
	},
	{
		displayName: 'Limit',
		name: 'limit',
		type: 'number',
		typeOptions: { minValue: 1 },
		displayOptions: { show: { operation: ['outboxList', 'outboxReplay'] } },
		default: 50,
		description: 'Max number of results to return',
	},
	{
		displayName: 'Include Maybe Delivered',
		name: 'includeMaybeDelivered',
		type: 'boolean',
		displayOptions: { show: { operation: ['outboxReplay'] } },
		default: false,
		description:
			'Whether to send again the intents whose answer was lost (they may have reached the recipient)',
	},
];
