import { argumentOptions, commandOptions, stageOptions } from '../nodes/Zyra/catalog';
import { Zyra } from '../nodes/Zyra/Zyra.node';
import { fakeContext, SERVER } from './context';
// GET /cli/commands as zyra-orchestrator answered it with Zyra 0.1.56.
import catalog from './fixtures/cli-commands.json';

describe('options from GET /cli/commands', () => {
	it('lists every stage once, by name, with its aliases shown', () => {
		const stages = stageOptions(catalog);
		expect(stages.map((s) => s.value)).toEqual([
			'acquire',
			'disseminate',
			'process',
			'run',
			'search',
			'visualize',
		]);
		expect(stages.find((s) => s.value === 'visualize')).toEqual({
			name: 'visualize (render)',
			value: 'visualize',
			description: '8 commands',
		});
		expect(stages.find((s) => s.value === 'run')?.name).toBe('run');
	});

	it("lists a stage's commands with their descriptions, also under an alias", () => {
		const commands = commandOptions(catalog, 'visualize');
		expect(commands.map((c) => c.value)).toEqual([
			'animate',
			'compose-video',
			'contour',
			'heatmap',
			'interactive',
			'sos',
			'timeseries',
			'vector',
		]);
		expect(commands.find((c) => c.value === 'heatmap')?.description).toBe(
			'Visualization: render 2D heatmap',
		);
		expect(commandOptions(catalog, 'render')).toEqual(commands);
		expect(commandOptions(catalog, 'nope')).toEqual([]);
	});

	it("lists a command's arguments from its schema, required ones first and marked", () => {
		const args = argumentOptions(catalog, 'visualize', 'heatmap');
		const names = args.map((a) => a.value);
		expect(names).toEqual(expect.arrayContaining(['input', 'output', 'no_coastline', 'width']));
		const width = args.find((a) => a.value === 'width');
		expect(width?.description).toBe('integer — default 1024');
		const extent = args.find((a) => a.value === 'extent');
		expect(extent?.description).toMatch(/^array of number — west east south north/);

		const withRequired = {
			stages: {
				process: {
					aliases: [],
					commands: {
						convert: {
							description: 'convert',
							schema: {
								properties: {
									zeta: { type: 'string' },
									alpha: { type: 'boolean' },
									src: { type: 'string' },
								},
								required: ['src'],
							},
						},
					},
				},
			},
		};
		expect(argumentOptions(withRequired, 'process', 'convert').map((a) => a.name)).toEqual([
			'src *',
			'alpha',
			'zeta',
		]);
	});
});

describe('loadOptions methods', () => {
	const methods = new Zyra().methods.loadOptions;

	it('getStages asks GET /cli/commands with the credential', async () => {
		const fake = fakeContext({}, [{ body: catalog }]);
		const stages = await methods.getStages.call(fake.context);
		expect(stages).toHaveLength(6);
		expect(fake.credentialTypes).toEqual(['zyraApi']);
		expect(fake.requests[0]).toMatchObject({
			method: 'GET',
			url: `${SERVER}/cli/commands`,
			json: true,
			returnFullResponse: true,
			ignoreHttpStatusErrors: true,
		});
	});

	it('getCommands and getArguments follow the chosen stage and command', async () => {
		const fake = fakeContext({ stage: 'render', command: 'heatmap' }, [
			{ body: catalog },
			{ body: catalog },
		]);
		const commands = await methods.getCommands.call(fake.context);
		expect(commands.map((c) => c.value)).toContain('heatmap');
		const args = await methods.getArguments.call(fake.context);
		expect(args.map((a) => a.value)).toContain('no_coastline');
	});

	it('asks nothing before a stage is chosen', async () => {
		const fake = fakeContext({ stage: '' }, []);
		expect(await methods.getCommands.call(fake.context)).toEqual([]);
		expect(await methods.getArguments.call(fake.context)).toEqual([]);
		expect(fake.requests).toHaveLength(0);
	});

	it('shows a refused request as the shaped error', async () => {
		const fake = fakeContext({}, [{ statusCode: 401, body: { detail: 'Invalid API key' } }]);
		await expect(methods.getStages.call(fake.context)).rejects.toThrow('Invalid API key');
	});
});
