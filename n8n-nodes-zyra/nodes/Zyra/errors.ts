import type { IDataObject, INode, JsonObject } from 'n8n-workflow';
import { NodeApiError, NodeOperationError } from 'n8n-workflow';

/** What a request to the service answered: the parts the node reads. */
export interface ZyraResponse<T = unknown> {
	statusCode: number;
	headers: IDataObject;
	body: T;
}

export interface ErrorText {
	message: string;
	description?: string;
}

/** How many characters of stderr an error shows: enough for a traceback's end. */
const STDERR_TAIL_CHARS = 2000;
/** A 404 names every valid stage or command; a long list is cut after this many. */
const MAX_VALID_NAMES = 40;

export function isObject(value: unknown): value is IDataObject {
	return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * An error n8n already knows how to show. By name too: a node installed in ~/.n8n/custom
 * may load its own copy of n8n-workflow, whose classes are not n8n's.
 */
export function isNodeError(error: unknown): error is NodeApiError {
	if (error instanceof NodeApiError || error instanceof NodeOperationError) return true;
	const name = (error as { name?: unknown } | null)?.name;
	return name === 'NodeApiError' || name === 'NodeOperationError';
}

export function header(headers: IDataObject | undefined, name: string): string | undefined {
	if (!headers) return undefined;
	const wanted = name.toLowerCase();
	for (const [key, value] of Object.entries(headers)) {
		if (key.toLowerCase() !== wanted || value === undefined || value === null) continue;
		return Array.isArray(value) ? String(value[0]) : String(value);
	}
	return undefined;
}

/** The last lines of a job's stderr, at most STDERR_TAIL_CHARS long. */
export function stderrTail(stderr: unknown): string {
	if (typeof stderr !== 'string') return '';
	const text = stderr.trimEnd();
	if (text.length <= STDERR_TAIL_CHARS) return text;
	const cut = text.slice(-STDERR_TAIL_CHARS);
	const lineStart = cut.indexOf('\n');
	// Start at a line boundary unless that would drop nearly everything.
	return lineStart >= 0 && lineStart < 200 ? cut.slice(lineStart + 1) : cut;
}

// As the service's `detail` (api/jobs/error_line.py): `ERROR: …`, `ValueError: …`,
// `zyra visualize heatmap: error: …`.
const ERROR_LINE =
	/^\s*(?:(?:ERROR|CRITICAL|FATAL)\b|(?:[A-Za-z_][\w.]*)?(?:Error|Exception):|error:)|: error: /;

/** The last line that reads as an error, else the last non-blank line: a hint Zyra prints
 * after its error (matplotlib's, for a bad colormap) does not hide the error. */
export function errorLine(text: string): string {
	const lines = text
		.split('\n')
		.map((line) => line.trim())
		.filter((line) => line !== '');
	const errors = lines.filter((line) => ERROR_LINE.test(line));
	const chosen = errors.length > 0 ? errors : lines;
	return chosen.length > 0 ? chosen[chosen.length - 1] : '';
}

/** `["body", "args", "input"]` → `args.input`: where the problem is, as the user wrote it. */
export function fieldPath(loc: unknown): string {
	if (!Array.isArray(loc)) return '';
	const parts = loc.map(String);
	if (parts.length > 1 && parts[0] === 'body') parts.shift();
	return parts.join('.');
}

function validationProblems(detail: unknown[]): ErrorText {
	const lines = detail.map((problem) => {
		if (!isObject(problem)) return String(problem);
		const where = fieldPath(problem.loc);
		const msg = typeof problem.msg === 'string' ? problem.msg : JSON.stringify(problem);
		return where ? `${where}: ${msg}` : msg;
	});
	return {
		message: lines.join('; ') || 'The request was refused as invalid',
		description: lines.length > 1 ? lines.join('\n') : undefined,
	};
}

function unknownName(detail: IDataObject): ErrorText {
	const field = typeof detail.field === 'string' ? detail.field : 'name';
	const msg = typeof detail.msg === 'string' ? detail.msg : `unknown ${field}`;
	const valid = Array.isArray(detail.valid) ? detail.valid.map(String) : [];
	if (valid.length === 0) return { message: msg };
	const shown = valid.slice(0, MAX_VALID_NAMES).join(', ');
	const more = valid.length > MAX_VALID_NAMES ? ` and ${valid.length - MAX_VALID_NAMES} more` : '';
	const list = `valid ${field}s: ${shown}${more}`;
	// The service's msg usually lists them already; say them once.
	const message = valid.every((name) => msg.includes(name)) ? msg : `${msg} (${list})`;
	return { message, description: `The ${field} is not one the service knows; ${list}.` };
}

export function isJobView(body: unknown): body is IDataObject {
	return isObject(body) && typeof body.job_id === 'string' && typeof body.status === 'string';
}

/** A job view that came back with an error status (fail_on_nonzero_exit): say why it failed. */
function failedJob(body: IDataObject): ErrorText {
	const summary = jobFailureSummary(body);
	const detail = typeof body.detail === 'string' ? body.detail : summary.message;
	return { message: detail, description: summary.description };
}

export function jobFailureSummary(job: IDataObject): ErrorText {
	const parts = [`status ${String(job.status)}`];
	if (job.exit_code !== undefined && job.exit_code !== null)
		parts.push(`exit code ${String(job.exit_code)}`);
	if (job.reason) parts.push(`reason ${String(job.reason)}`);
	const tail = stderrTail(job.stderr);
	const last = errorLine(tail);
	const message = `Zyra job ${String(job.job_id)} did not succeed (${parts.join(', ')})${last ? `: ${last}` : ''}`;
	return { message, description: tail || undefined };
}

function retryAfter(headers: IDataObject, body: IDataObject | undefined): string | undefined {
	const value = header(headers, 'retry-after') ?? body?.retry_after_s;
	if (value === undefined || value === null || value === '') return undefined;
	const text = String(value).trim();
	return /^\d+$/.test(text) ? `${text} s` : text;
}

function plainDetail(body: unknown): string | undefined {
	if (typeof body === 'string' && body.trim() !== '') return body.trim();
	if (!isObject(body)) return undefined;
	if (typeof body.detail === 'string') return body.detail;
	if (isObject(body.detail) && typeof body.detail.msg === 'string') return body.detail.msg;
	if (typeof body.message === 'string') return body.message;
	return undefined;
}

/** The message and description of an error answer: what a user reads in n8n. */
export function describeHttpError(response: ZyraResponse): ErrorText {
	const { statusCode, headers } = response;
	const body = response.body;
	const detail = isObject(body) ? body.detail : undefined;

	if (Array.isArray(detail)) return validationProblems(detail);
	if (statusCode === 404 && isObject(detail) && Array.isArray(detail.valid))
		return unknownName(detail);
	if (isJobView(body)) return failedJob(body);
	if (statusCode === 429 || statusCode === 503) {
		const base =
			plainDetail(body) ??
			(statusCode === 429 ? 'Too many requests' : 'The service is unavailable');
		const after = retryAfter(headers, isObject(body) ? body : undefined);
		return { message: after ? `${base} (Retry-After: ${after})` : base };
	}
	return { message: plainDetail(body) ?? `The service answered HTTP ${statusCode}` };
}

/**
 * A NodeOperationError that keeps its message. n8n swaps any message that merely contains a
 * Node error code, case-blind, for a stock text: a job's "FileNotFoundError" holds "ENOTFOUND"
 * and would read "The connection cannot be established...".
 */
export function operationError(
	node: INode,
	message: string,
	options: { itemIndex?: number; description?: string } = {},
): NodeOperationError {
	const error = new NodeOperationError(node, message, options);
	error.message = message;
	return error;
}

/** An error answer as the NodeApiError n8n shows, with the message describeHttpError wrote. */
export function httpError(node: INode, response: ZyraResponse, itemIndex?: number): NodeApiError {
	const { message, description } = describeHttpError(response);
	const body = isObject(response.body) ? response.body : { body: String(response.body ?? '') };
	const error = new NodeApiError(node, body as JsonObject, {
		message,
		description,
		httpCode: String(response.statusCode),
		itemIndex,
	});
	// NodeApiError may swap the message for a stock one per status; the shaped one is the point.
	error.message = message;
	error.description = description;
	// A sync run refused for its exit (fail_on_nonzero_exit) answers with the job view.
	if (isJobView(response.body)) error.context.job = response.body;
	return error;
}
