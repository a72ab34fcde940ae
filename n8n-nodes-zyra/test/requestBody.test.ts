import {
	buildArgs,
	buildHeaders,
	buildRunBody,
	InputError,
	parseJsonObject,
} from '../nodes/Zyra/requestBody';

describe('buildArgs', () => {
	it('merges the JSON object and the pairs, a pair winning, each read as its type', () => {
		const args = buildArgs('{"input": "file_id:abc", "width": 10, "output": "a.png"}', [
			{ name: 'width', value: '800', type: 'number' },
			{ name: 'no_coastline', value: 'true', type: 'boolean' },
			{ name: 'extent', value: '[-180, 180, -90, 90]', type: 'json' },
			{ name: 'output', value: 'map.png' },
			{ name: '  ', value: 'ignored' },
		]);
		expect(args).toEqual({
			input: 'file_id:abc',
			width: 800,
			output: 'map.png',
			no_coastline: true,
			extent: [-180, 180, -90, 90],
		});
	});

	it('takes an object an expression produced as it is', () => {
		expect(buildArgs({ input: { file_id: 'abc' } }, undefined)).toEqual({
			input: { file_id: 'abc' },
		});
		expect(buildArgs('', [])).toEqual({});
	});

	it('refuses what is not a JSON object, or a value that is not of its type', () => {
		expect(() => buildArgs('{"input": ', [])).toThrow(/Arguments \(JSON\) is not valid JSON/);
		expect(() => buildArgs('[1, 2]', [])).toThrow('Arguments (JSON) must be a JSON object');
		expect(() => buildArgs('{}', [{ name: 'width', value: 'wide', type: 'number' }])).toThrow(
			InputError,
		);
		expect(() => buildArgs('{}', [{ name: 'flag', value: 'maybe', type: 'boolean' }])).toThrow(
			'Argument "flag": "maybe" is not true or false',
		);
	});
});

describe('buildRunBody', () => {
	it('leaves out what is not set so the service defaults apply', () => {
		expect(
			buildRunBody({
				stage: 'visualize',
				command: 'heatmap',
				args: {},
				metadata: {},
				timeoutS: 0,
				mode: 'sync',
			}),
		).toEqual({ stage: 'visualize', command: 'heatmap', args: {}, mode: 'sync' });
	});

	it('needs a stage and a command', () => {
		expect(() =>
			buildRunBody({ stage: '', command: 'x', args: {}, metadata: {}, timeoutS: 0, mode: 'sync' }),
		).toThrow('Choose a stage');
	});

	it('parses metadata and headers', () => {
		expect(parseJsonObject(' ', 'Metadata (JSON)')).toEqual({});
		expect(
			buildHeaders([
				{ name: 'X-Auth', value: 's' },
				{ name: '', value: 'x' },
			]),
		).toEqual({
			'X-Auth': 's',
		});
	});
});
