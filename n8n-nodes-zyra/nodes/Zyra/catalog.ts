import type { IDataObject, ILoadOptionsFunctions, INodePropertyOptions } from 'n8n-workflow';

import { isObject } from './errors';
import { zyraRequest } from './transport';

/** What GET /cli/commands says of one command. */
export interface CatalogCommand {
	description?: string;
	schema?: { properties?: Record<string, IDataObject>; required?: string[] };
}

export interface CatalogStage {
	aliases?: string[];
	commands?: Record<string, CatalogCommand>;
}

export interface Catalog {
	zyra_version?: string;
	stages?: Record<string, CatalogStage>;
}

const byName = (a: INodePropertyOptions, b: INodePropertyOptions) => a.name.localeCompare(b.name);

/** The stage a name means: the stage itself or one whose aliases hold it. */
function findStage(catalog: Catalog, stage: string): CatalogStage | undefined {
	const stages = catalog.stages ?? {};
	if (stages[stage]) return stages[stage];
	return Object.values(stages).find((spec) => (spec.aliases ?? []).includes(stage));
}

export function stageOptions(catalog: Catalog): INodePropertyOptions[] {
	return Object.entries(catalog.stages ?? {})
		.map(([name, spec]) => {
			const aliases = spec.aliases ?? [];
			const count = Object.keys(spec.commands ?? {}).length;
			return {
				name: aliases.length > 0 ? `${name} (${aliases.join(', ')})` : name,
				value: name,
				description: `${count} command${count === 1 ? '' : 's'}`,
			};
		})
		.sort(byName);
}

export function commandOptions(catalog: Catalog, stage: string): INodePropertyOptions[] {
	const spec = findStage(catalog, stage);
	return Object.entries(spec?.commands ?? {})
		.map(([name, command]) => ({
			name,
			value: name,
			description: command.description || undefined,
		}))
		.sort(byName);
}

function describeArgument(schema: IDataObject, required: boolean): string {
	const type = Array.isArray(schema.type) ? schema.type.join(' | ') : String(schema.type ?? 'any');
	const items =
		isObject(schema.items) && schema.items.type ? ` of ${String(schema.items.type)}` : '';
	const parts = [`${required ? 'Required ' : ''}${type}${items}`];
	if (typeof schema.description === 'string' && schema.description) parts.push(schema.description);
	if (schema.default !== undefined) parts.push(`default ${JSON.stringify(schema.default)}`);
	return parts.join(' — ');
}

/** The arguments of a command from its JSON Schema: required ones first, then by name. */
export function argumentOptions(
	catalog: Catalog,
	stage: string,
	command: string,
): INodePropertyOptions[] {
	const schema = findStage(catalog, stage)?.commands?.[command]?.schema;
	const required = new Set(schema?.required ?? []);
	return Object.entries(schema?.properties ?? {})
		.map(([name, property]) => ({
			name: required.has(name) ? `${name} *` : name,
			value: name,
			description: describeArgument(isObject(property) ? property : {}, required.has(name)),
		}))
		.sort((a, b) => {
			const rank = Number(!required.has(a.value)) - Number(!required.has(b.value));
			return rank !== 0 ? rank : a.value.localeCompare(b.value);
		});
}

async function fetchCatalog(this: ILoadOptionsFunctions): Promise<Catalog> {
	const response = await zyraRequest.call(this, { method: 'GET', path: '/cli/commands' });
	return isObject(response.body) ? (response.body as Catalog) : {};
}

function currentString(context: ILoadOptionsFunctions, name: string): string {
	const value = context.getCurrentNodeParameter(name);
	return typeof value === 'string' ? value : '';
}

export const loadOptions = {
	async getStages(this: ILoadOptionsFunctions): Promise<INodePropertyOptions[]> {
		return stageOptions(await fetchCatalog.call(this));
	},

	async getCommands(this: ILoadOptionsFunctions): Promise<INodePropertyOptions[]> {
		const stage = currentString(this, 'stage');
		if (!stage) return [];
		return commandOptions(await fetchCatalog.call(this), stage);
	},

	async getArguments(this: ILoadOptionsFunctions): Promise<INodePropertyOptions[]> {
		const stage = currentString(this, 'stage');
		const command = currentString(this, 'command');
		if (!stage || !command) return [];
		return argumentOptions(await fetchCatalog.call(this), stage, command);
	},
};
