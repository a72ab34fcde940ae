import type { IDataObject } from 'n8n-workflow';

import { isObject } from './errors';

/** One row of the "Arguments" list: a name, a value as typed, and how to read the value. */
export interface ArgumentPair {
	name?: string;
	value?: string;
	type?: 'string' | 'number' | 'boolean' | 'json';
}

export interface HeaderPair {
	name?: string;
	value?: string;
}

/** Thrown for what the user typed; the node turns it into a NodeOperationError. */
export class InputError extends Error {}

/**
 * A JSON object parameter: n8n hands a `json` field over as text, or as an object when
 * an expression produced one. Empty means none.
 */
export function parseJsonObject(value: unknown, label: string): IDataObject {
	if (value === undefined || value === null || value === '') return {};
	let parsed: unknown = value;
	if (typeof value === 'string') {
		if (value.trim() === '') return {};
		try {
			parsed = JSON.parse(value);
		} catch (error) {
			throw new InputError(`${label} is not valid JSON: ${(error as Error).message}`);
		}
	}
	if (!isObject(parsed)) throw new InputError(`${label} must be a JSON object`);
	return parsed;
}

function convertValue(pair: ArgumentPair): unknown {
	const raw = pair.value ?? '';
	switch (pair.type ?? 'string') {
		case 'number': {
			const number = Number(raw);
			if (raw.trim() === '' || Number.isNaN(number))
				throw new InputError(`Argument "${pair.name}": "${raw}" is not a number`);
			return number;
		}
		case 'boolean': {
			const text = raw.trim().toLowerCase();
			if (['true', '1', 'yes', 'on'].includes(text)) return true;
			if (['false', '0', 'no', 'off', ''].includes(text)) return false;
			throw new InputError(`Argument "${pair.name}": "${raw}" is not true or false`);
		}
		case 'json':
			try {
				return JSON.parse(raw);
			} catch (error) {
				throw new InputError(
					`Argument "${pair.name}" is not valid JSON: ${(error as Error).message}`,
				);
			}
		default:
			return raw;
	}
}

/** The `args` object: the JSON field first, then each listed pair (a pair wins). */
export function buildArgs(argsJson: unknown, pairs: ArgumentPair[] | undefined): IDataObject {
	const args = parseJsonObject(argsJson, 'Arguments (JSON)');
	for (const pair of pairs ?? []) {
		const name = (pair.name ?? '').trim();
		if (name === '') continue;
		args[name] = convertValue(pair) as IDataObject[keyof IDataObject];
	}
	return args;
}

export function buildHeaders(pairs: HeaderPair[] | undefined): IDataObject {
	const headers: IDataObject = {};
	for (const pair of pairs ?? []) {
		const name = (pair.name ?? '').trim();
		if (name !== '') headers[name] = pair.value ?? '';
	}
	return headers;
}

export interface RunInput {
	stage: string;
	command: string;
	args: IDataObject;
	metadata: IDataObject;
	timeoutS: number;
	mode: 'sync' | 'async';
	failOnNonzeroExit?: boolean;
	callbackUrl?: string;
	callbackSecret?: string;
	callbackHeaders?: IDataObject;
}

/** The POST /cli/run body: optional fields only when set, so the service's defaults apply. */
export function buildRunBody(input: RunInput): IDataObject {
	if (!input.stage) throw new InputError('Choose a stage');
	if (!input.command) throw new InputError('Choose a command');
	const body: IDataObject = {
		stage: input.stage,
		command: input.command,
		args: input.args,
		mode: input.mode,
	};
	if (Object.keys(input.metadata).length > 0) body.metadata = input.metadata;
	if (input.timeoutS > 0) body.timeout_s = input.timeoutS;
	if (input.failOnNonzeroExit) body.fail_on_nonzero_exit = true;
	if (input.callbackUrl) body.callback_url = input.callbackUrl;
	if (input.callbackSecret) body.callback_secret = input.callbackSecret;
	if (input.callbackHeaders && Object.keys(input.callbackHeaders).length > 0)
		body.callback_headers = input.callbackHeaders;
	return body;
}
