import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IDataObject, IExecuteFunctions } from 'n8n-workflow';

import { compile, evaluate, Params } from '../nodes/WaAuth/params';

test('`{{ $json... }}` paths are compiled; anything else is left to the engine', () => {
	assert.deepEqual(compile('={{ $json.to }}'), { whole: true, parts: [['to']] });
	assert.deepEqual(compile("=Order {{ $json.order }} for {{ $json['the name'] }}!"), {
		whole: false,
		parts: ['Order ', ['order'], ' for ', ['the name'], '!'],
	});
	assert.deepEqual(compile('={{$json.a.b[0]["c"]}}'), { whole: true, parts: [['a', 'b', '0', 'c']] });
	for (const raw of [
		'plain text',
		'=no braces',
		'={{ $json.to.toUpperCase() }}',
		'={{ $json.a + 1 }}',
		'={{ $json }}',
		'={{ $jsonx.a }}',
		'={{ $node["x"].json.a }}',
		'={{ $json.a }} }}',
		7,
	]) {
		assert.equal(compile(raw), null, String(raw));
	}
});

test('a compiled template gives what n8n gives, or undefined where only the engine can tell', () => {
	const json = { to: '+1555', order: 101, ok: true, nested: { n: [{ c: 'x' }] }, obj: {}, nan: NaN };
	const whole = compile('={{ $json.order }}');
	const text = compile('=Order {{ $json.order }} ({{ $json.ok }}) {{ $json.nested.n[0].c }}');
	assert.ok(whole && text);
	assert.equal(evaluate(whole, json), 101);
	assert.equal(evaluate(text, json), 'Order 101 (true) x');
	for (const raw of ['={{ $json.obj }}', '={{ $json.missing }}', '=a {{ $json.nan }}', '={{ $json.to.length }}']) {
		const template = compile(raw);
		assert.ok(template, raw);
		assert.equal(evaluate(template, json), undefined, raw);
	}
	const proto = compile('={{ $json.constructor }}');
	assert.ok(proto);
	assert.equal(evaluate(proto, json), undefined);
});

test('Params reads constants once, paths from the item, and the rest through getNodeParameter', () => {
	const asked: Array<[string, number]> = [];
	const raw: IDataObject = {
		messageType: 'text',
		options: { batchSize: 200 },
		to: '={{ $json.phone }}',
		text: '={{ $json.body.toUpperCase() }}',
	};
	const ctx = {
		getNode: () => ({ parameters: raw }),
		getNodeParameter: (name: string, i: number) => {
			asked.push([name, i]);
			return name === 'text' ? `engine ${i}` : raw[name];
		},
	} as unknown as IExecuteFunctions;
	const items = [{ json: { phone: '+1', body: 'a' } }, { json: { phone: { no: 1 }, body: 'b' } }];
	const params = new Params(ctx, items);
	assert.equal(params.get('messageType', 0), 'text');
	assert.equal(params.get('messageType', 1), 'text');
	assert.deepEqual(params.get('options', 1), { batchSize: 200 });
	assert.equal(params.get('to', 0), '+1');
	assert.equal(params.get('text', 0), 'engine 0');
	assert.equal(params.get('to', 1), raw.to); // an object: the engine's answer
	assert.deepEqual(asked, [
		['messageType', 0],
		['options', 1],
		['text', 0],
		['to', 1],
	]);
});
