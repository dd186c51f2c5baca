import type { IDataObject, IExecuteFunctions, INodeExecutionData, INodeParameters } from 'n8n-workflow';

/** A piece of a compiled parameter: literal text, or a path into the item's JSON (`$json`). */
type Part = string | string[];

/**
 * A parameter that is one `{{ $json... }}` (`whole`: its value as it is) or text with such
 * paths in it (their values joined into one string): what n8n's expression engine computes for
 * these, without the engine.
 */
export interface Template {
	whole: boolean;
	parts: Part[];
}

const SEGMENT = /\{\{([\s\S]*?)\}\}/g;
const ACCESSOR = /^\s*(?:\.\s*([A-Za-z_$][\w$]*)|\[\s*(?:'([^'\\]*)'|"([^"\\]*)"|(\d+))\s*\])/;

function jsonPath(expression: string): string[] | null {
	if (!/^\$json(?![\w$])/.test(expression)) return null;
	let rest = expression.slice('$json'.length);
	const path: string[] = [];
	while (rest.trim() !== '') {
		const match = ACCESSOR.exec(rest);
		if (match === null) return null;
		path.push(match[1] ?? match[2] ?? match[3] ?? match[4]);
		rest = rest.slice(match[0].length);
	}
	return path.length > 0 ? path : null;
}

/**
 * The template of a raw parameter value, or null when only n8n's engine can evaluate it (not
 * an expression, or one with anything but `$json` paths in its `{{ }}`: a function call, an
 * operator, another variable).
 */
export function compile(raw: unknown): Template | null {
	if (typeof raw !== 'string' || !raw.startsWith('=') || !raw.includes('{{')) return null;
	const text = raw.slice(1);
	const parts: Part[] = [];
	let last = 0;
	for (const match of text.matchAll(SEGMENT)) {
		const path = jsonPath(match[1].trim());
		if (path === null) return null;
		const at = match.index ?? 0;
		if (at > last) parts.push(text.slice(last, at));
		parts.push(path);
		last = at + match[0].length;
	}
	if (last < text.length) parts.push(text.slice(last));
	if (parts.some((p) => typeof p === 'string' && (p.includes('{{') || p.includes('}}')))) {
		return null;
	}
	return { whole: parts.length === 1 && typeof parts[0] !== 'string', parts };
}

function isPlain(value: unknown): value is string | number | boolean {
	return (
		typeof value === 'string' ||
		typeof value === 'boolean' ||
		(typeof value === 'number' && Number.isFinite(value))
	);
}

/**
 * The template's value for one item's JSON, or undefined when it is not a plain string, a
 * finite number or a boolean (an object, a missing field): then the engine says what it is.
 */
export function evaluate(template: Template, json: IDataObject): string | number | boolean | undefined {
	let text = '';
	for (const part of template.parts) {
		if (typeof part === 'string') {
			text += part;
			continue;
		}
		let value: unknown = json;
		for (const key of part) {
			if (typeof value !== 'object' || value === null || !Object.prototype.hasOwnProperty.call(value, key)) {
				return undefined;
			}
			value = (value as IDataObject)[key];
		}
		if (!isPlain(value)) return undefined;
		if (template.whole) return value;
		text += String(value);
	}
	return text;
}

function hasExpression(value: unknown): boolean {
	if (typeof value === 'string') return value.startsWith('=');
	if (Array.isArray(value)) return value.some(hasExpression);
	if (typeof value === 'object' && value !== null) return Object.values(value).some(hasExpression);
	return false;
}

/**
 * The node's parameters for each item of one execution, read the cheap way where that gives
 * n8n's own answer: a parameter without an expression is the same for every item (read once),
 * and `{{ $json.field }}` is the item's field (read from the item). Anything else goes through
 * `getNodeParameter`, whose expression engine is most of a large batch's time otherwise.
 */
export class Params {
	/** The node's raw parameters, as the workflow holds them. */
	readonly raw: INodeParameters;

	private readonly templates = new Map<string, Template | null>();

	private readonly constants = new Map<string, unknown>();

	constructor(
		private readonly ctx: IExecuteFunctions,
		private readonly items: INodeExecutionData[],
	) {
		this.raw = ctx.getNode().parameters;
	}

	/** The value of parameter *name* for item *i* (`getNodeParameter`'s, with *fallback*). */
	get(name: string, i: number, fallback?: unknown): unknown {
		const raw = this.raw[name];
		if (raw !== undefined && !hasExpression(raw)) {
			if (!this.constants.has(name)) {
				this.constants.set(name, this.ctx.getNodeParameter(name, i, fallback));
			}
			return this.constants.get(name);
		}
		let template = this.templates.get(name);
		if (template === undefined) {
			template = compile(raw);
			this.templates.set(name, template);
		}
		if (template !== null) {
			const value = evaluate(template, this.items[i].json);
			if (value !== undefined) return value;
		}
		return this.ctx.getNodeParameter(name, i, fallback);
	}
}
