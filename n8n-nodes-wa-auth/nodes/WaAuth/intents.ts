import type { IDataObject, INode } from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';

/** The message kinds Send builds from fields (raw takes a whole intent). */
export type MessageType = 'text' | 'template' | 'media' | 'interactive' | 'raw';

export const MEDIA_TYPES = ['image', 'document', 'audio', 'video', 'sticker'] as const;

/** What the Send fields of one item hold, already read from n8n's parameters. */
export interface SendFields {
	messageType: MessageType;
	to: string;
	idempotencyKey: string;
	phoneNumberId?: string;
	consumer?: string;
	text?: string;
	previewUrl?: boolean;
	templateName?: string;
	languageCode?: string;
	templateComponents?: unknown;
	mediaType?: string;
	mediaSource?: 'link' | 'id';
	media?: string;
	caption?: string;
	filename?: string;
	bodyText?: string;
	buttons?: string[];
	intent?: unknown;
}

/** The node and item a Send field belongs to, for the NodeOperationError of a bad one. */
export interface Where {
	node: INode;
	itemIndex: number;
}

function fieldError(where: Where, message: string, field: string): NodeOperationError {
	return new NodeOperationError(where.node, `Send: ${message}`, {
		itemIndex: where.itemIndex,
		description: `Check the field "${field}"`,
	});
}

function required(where: Where, value: string | undefined, field: string, what: string): string {
	const text = (value ?? '').trim();
	if (text === '') throw fieldError(where, `${what} is empty`, field);
	return text;
}

function parseJson(where: Where, value: unknown, field: string): unknown {
	if (typeof value !== 'string') return value;
	if (value.trim() === '') return undefined;
	try {
		return JSON.parse(value) as unknown;
	} catch {
		throw fieldError(where, `${field} is not valid JSON`, field);
	}
}

function isObject(value: unknown): value is IDataObject {
	return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The intent JSON serve's `/send` takes (wa_auth's intent shape, version 1) for one item.
 *
 * serve validates it again and answers an invalid one with its own `invalid_request` line:
 * the checks here only catch what would otherwise be an unreadable request.
 */
export function buildIntent(fields: SendFields, where: Where): IDataObject {
	let intent: IDataObject;
	if (fields.messageType === 'raw') {
		const raw = parseJson(where, fields.intent, 'intent');
		if (!isObject(raw)) throw fieldError(where, 'the intent must be a JSON object', 'intent');
		intent = { ...raw };
	} else {
		const to = required(where, fields.to, 'to', 'the recipient (To)');
		intent = { to, ...messageBody(fields, where) };
	}
	if (intent.idempotency_key === undefined || intent.idempotency_key === null) {
		intent.idempotency_key = required(
			where,
			fields.idempotencyKey,
			'idempotencyKey',
			'the idempotency key',
		);
	}
	if (fields.phoneNumberId && intent.phone_number_id === undefined) {
		intent.phone_number_id = fields.phoneNumberId.trim();
	}
	if (fields.consumer && intent.consumer === undefined) intent.consumer = fields.consumer;
	return intent;
}

function messageBody(fields: SendFields, where: Where): IDataObject {
	switch (fields.messageType) {
		case 'text':
			return {
				type: 'text',
				text: {
					body: required(where, fields.text, 'text', 'the text'),
					preview_url: !!fields.previewUrl,
				},
			};
		case 'template': {
			const template: IDataObject = {
				name: required(where, fields.templateName, 'templateName', 'the template name'),
				language: {
					code: required(where, fields.languageCode, 'languageCode', 'the language code'),
				},
			};
			const components = parseJson(where, fields.templateComponents, 'templateComponents');
			if (components !== undefined) {
				if (!Array.isArray(components)) {
					throw fieldError(
						where,
						'the template components must be a JSON array',
						'templateComponents',
					);
				}
				template.components = components as IDataObject[];
			}
			return { type: 'template', template };
		}
		case 'media': {
			const kind = fields.mediaType ?? 'image';
			if (!(MEDIA_TYPES as readonly string[]).includes(kind)) {
				throw fieldError(
					where,
					`the media type must be one of ${MEDIA_TYPES.join(', ')}`,
					'mediaType',
				);
			}
			const source = fields.mediaSource === 'id' ? 'id' : 'link';
			const media: IDataObject = {
				[source]: required(where, fields.media, 'media', 'the media link or id'),
			};
			if (fields.caption && kind !== 'audio' && kind !== 'sticker') media.caption = fields.caption;
			if (fields.filename && kind === 'document') media.filename = fields.filename;
			return { type: kind, [kind]: media };
		}
		case 'interactive': {
			const titles = (fields.buttons ?? []).map((t) => t.trim()).filter((t) => t !== '');
			if (titles.length === 0 || titles.length > 3) {
				throw fieldError(where, 'reply buttons take one to three button titles', 'buttons');
			}
			return {
				type: 'interactive',
				interactive: {
					type: 'button',
					body: { text: required(where, fields.bodyText, 'bodyText', 'the body text') },
					action: {
						buttons: titles.map((title, index) => ({
							type: 'reply',
							reply: { id: `button-${index + 1}`, title },
						})),
					},
				},
			};
		}
		default:
			throw fieldError(where, `unknown message type ${String(fields.messageType)}`, 'messageType');
	}
}
