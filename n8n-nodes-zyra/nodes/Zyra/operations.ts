import type { IDataObject, IExecuteFunctions, INodeExecutionData } from 'n8n-workflow';
import { sleep } from 'n8n-workflow';

import type { ZyraResponse } from './errors';
import { header, isObject, jobFailureSummary, operationError } from './errors';
import { contentDispositionFileName, multipartFile } from './multipart';
import type { ArgumentPair, HeaderPair } from './requestBody';
import { buildArgs, buildHeaders, buildRunBody, parseJsonObject } from './requestBody';
import { zyraRequest } from './transport';

export const TERMINAL_STATUSES = ['succeeded', 'failed', 'cancelled'];
/** A job view from before the sync status became the job's status said these. */
const LEGACY_STATUSES: Record<string, string> = { success: 'succeeded', error: 'failed' };
/** A long-poll answer may come this much after its wait; the HTTP timeout allows for it. */
const REQUEST_SLACK_MS = 30_000;
/** A service that answers a long-poll at once (no `wait` support) is asked again after this. */
const MIN_POLL_INTERVAL_MS = 1_000;

export const UPLOAD_PATH = '/upload';

type Output = INodeExecutionData[];

/** An error that came with a job view: "Continue on Fail" outputs the view with the error. */
export function withJob<E extends { context: IDataObject }>(error: E, job: IDataObject): E {
	error.context.job = job;
	return error;
}

export function jobStatus(job: IDataObject): string {
	const status = String(job.status ?? '');
	return LEGACY_STATUSES[status] ?? status;
}

function item(json: IDataObject, itemIndex: number): INodeExecutionData {
	return { json, pairedItem: { item: itemIndex } };
}

function asObject(body: unknown): IDataObject {
	return isObject(body) ? body : { body: body as IDataObject[keyof IDataObject] };
}

function jobPath(jobId: string): string {
	const id = jobId.trim();
	if (id === '') throw new Error('Job ID is empty');
	return `/jobs/${encodeURIComponent(id)}`;
}

function runBody(ctx: IExecuteFunctions, i: number, mode: 'sync' | 'async'): IDataObject {
	const operation = ctx.getNodeParameter('operation', i) as string;
	const param = <T>(name: string, fallback: T, only?: string): T =>
		only === undefined || only === operation
			? (ctx.getNodeParameter(name, i, fallback) as T)
			: fallback;
	const argsUi = param<{ argument?: ArgumentPair[] }>('argumentsUi', {});
	const headers = param<{ header?: HeaderPair[] }>('callbackHeaders', {}, 'submit');
	return buildRunBody({
		stage: param('stage', ''),
		command: param('command', ''),
		args: buildArgs(param<unknown>('argumentsJson', '{}'), argsUi.argument),
		metadata: parseJsonObject(param<unknown>('metadata', '{}'), 'Metadata (JSON)'),
		timeoutS: Number(param('timeout', 0)),
		mode,
		failOnNonzeroExit: param('failOnNonZeroExit', false, 'run'),
		callbackUrl: String(param('callbackUrl', '', 'submit')).trim(),
		callbackSecret: String(param('callbackSecret', '', 'submit')),
		callbackHeaders: buildHeaders(headers.header),
	});
}

/** A sync run may take the command's whole timeout; give the HTTP request a minute more. */
function syncTimeoutMs(body: IDataObject): number | undefined {
	return typeof body.timeout_s === 'number' ? (body.timeout_s + 60) * 1000 : undefined;
}

export async function run(this: IExecuteFunctions, i: number): Promise<Output> {
	const body = runBody(this, i, 'sync');
	const response = await zyraRequest.call(
		this,
		{ method: 'POST', path: '/cli/run', body, timeoutMs: syncTimeoutMs(body) },
		i,
	);
	return [item(asObject(response.body), i)];
}

export async function submit(this: IExecuteFunctions, i: number): Promise<Output> {
	const body = runBody(this, i, 'async');
	const response = await zyraRequest.call(this, { method: 'POST', path: '/cli/run', body }, i);
	return [item(asObject(response.body), i)];
}

async function getJob(
	ctx: IExecuteFunctions,
	jobId: string,
	waitS: number,
	i: number,
	abortSignal?: AbortSignal,
): Promise<IDataObject> {
	const qs: IDataObject = waitS > 0 ? { wait: waitS } : {};
	const timeoutMs = waitS * 1000 + REQUEST_SLACK_MS;
	const response = await zyraRequest.call(
		ctx,
		{ method: 'GET', path: jobPath(jobId), qs, timeoutMs, abortSignal },
		i,
	);
	return asObject(response.body);
}

export async function runAndWait(this: IExecuteFunctions, i: number): Promise<Output> {
	const maxWaitS = Math.max(1, Number(this.getNodeParameter('maxWait', i, 600)));
	const options = this.getNodeParameter('waitOptions', i, {}) as {
		pollWait?: number;
		cancelOnTimeout?: boolean;
	};
	const pollWaitS = Math.min(60, Math.max(1, Math.round(options.pollWait ?? 30)));
	const cancelOnTimeout = options.cancelOnTimeout ?? true;

	const accepted = await zyraRequest.call(
		this,
		{ method: 'POST', path: '/cli/run', body: runBody(this, i, 'async') },
		i,
	);
	const jobId = String(asObject(accepted.body).job_id ?? '');
	if (!jobId) {
		throw operationError(this.getNode(), 'The service accepted the job but gave no job_id', {
			itemIndex: i,
		});
	}

	const deadline = Date.now() + maxWaitS * 1000;
	const cancelSignal = this.getExecutionCancelSignal?.();
	let job: IDataObject = { job_id: jobId, status: 'queued' };
	for (;;) {
		const left = deadline - Date.now();
		if (left <= 0) break;
		if (cancelSignal?.aborted) {
			throw withJob(
				operationError(
					this.getNode(),
					`The execution was cancelled while waiting for Zyra job ${jobId}; the job goes on`,
					{ itemIndex: i },
				),
				job,
			);
		}
		const waitS = Math.max(1, Math.min(pollWaitS, Math.ceil(left / 1000)));
		const started = Date.now();
		job = await getJob(this, jobId, waitS, i, cancelSignal);
		if (TERMINAL_STATUSES.includes(jobStatus(job))) break;
		// A service without long-poll answers at once: do not hammer it.
		const spent = Date.now() - started;
		if (spent < MIN_POLL_INTERVAL_MS)
			await sleep(Math.min(MIN_POLL_INTERVAL_MS - spent, Math.max(0, deadline - Date.now())));
	}

	const status = jobStatus(job);
	if (!TERMINAL_STATUSES.includes(status)) {
		let outcome = 'it is left running';
		if (cancelOnTimeout) {
			try {
				const answer = await zyraRequest.call(this, { method: 'DELETE', path: jobPath(jobId) }, i);
				outcome = String(asObject(answer.body).message ?? 'it was cancelled');
			} catch (error) {
				outcome = `cancelling it failed: ${(error as Error).message}`;
			}
		}
		throw withJob(
			operationError(
				this.getNode(),
				`Zyra job ${jobId} did not end within ${maxWaitS} s (status ${status}); ${outcome}`,
				{ itemIndex: i, description: 'Raise "Max Wait (Seconds)", or use Submit with a callback.' },
			),
			job,
		);
	}
	if (status !== 'succeeded') {
		const { message, description } = jobFailureSummary(job);
		throw withJob(operationError(this.getNode(), message, { itemIndex: i, description }), job);
	}
	return [item(job, i)];
}

export async function get(this: IExecuteFunctions, i: number): Promise<Output> {
	const jobId = this.getNodeParameter('jobId', i) as string;
	const waitS = Math.min(60, Math.max(0, Math.round(Number(this.getNodeParameter('wait', i, 0)))));
	return [item(await getJob(this, jobId, waitS, i), i)];
}

export async function getAll(this: IExecuteFunctions, i: number): Promise<Output> {
	const returnAll = this.getNodeParameter('returnAll', i, false) as boolean;
	const limit = returnAll ? Infinity : Number(this.getNodeParameter('limit', i, 50));
	const filters = this.getNodeParameter('filters', i, {}) as IDataObject;
	const qs: IDataObject = {};
	for (const key of ['status', 'stage', 'command', 'owner']) {
		if (filters[key] !== undefined && filters[key] !== '') qs[key] = filters[key];
	}

	const jobs: IDataObject[] = [];
	let cursor: string | undefined;
	do {
		const pageSize = returnAll ? 500 : Math.min(500, limit - jobs.length);
		const page = await zyraRequest.call(
			this,
			{
				method: 'GET',
				path: '/jobs',
				qs: { ...qs, limit: pageSize, ...(cursor ? { cursor } : {}) },
			},
			i,
		);
		const body = asObject(page.body);
		if (Array.isArray(body.jobs)) jobs.push(...(body.jobs as IDataObject[]));
		cursor =
			typeof body.next_cursor === 'string' && body.next_cursor ? body.next_cursor : undefined;
	} while (cursor && jobs.length < limit);

	return jobs.slice(0, limit).map((job) => item(job, i));
}

export async function cancel(this: IExecuteFunctions, i: number): Promise<Output> {
	const jobId = this.getNodeParameter('jobId', i) as string;
	const response = await zyraRequest.call(this, { method: 'DELETE', path: jobPath(jobId) }, i);
	return [item(asObject(response.body), i)];
}

/** The answer's media type when it says something more than "bytes". */
function specificMimeType(response: ZyraResponse): string | undefined {
	const type = header(response.headers, 'content-type')?.split(';')[0].trim();
	return type && type !== 'application/octet-stream' ? type : undefined;
}

export async function download(this: IExecuteFunctions, i: number): Promise<Output> {
	const jobId = this.getNodeParameter('jobId', i) as string;
	const file = String(this.getNodeParameter('file', i, '')).trim();
	const binaryPropertyName = this.getNodeParameter('binaryPropertyName', i) as string;
	const response = await zyraRequest.call(
		this,
		{
			method: 'GET',
			path: `${jobPath(jobId)}/download`,
			qs: file ? { file } : {},
			binary: true,
		},
		i,
	);
	const data = Buffer.isBuffer(response.body)
		? response.body
		: Buffer.from(response.body as ArrayBuffer);
	const fileName =
		contentDispositionFileName(header(response.headers, 'content-disposition')) ||
		file ||
		`${jobId}-outputs`;
	const binary = await this.helpers.prepareBinaryData(data, fileName, specificMimeType(response));
	return [
		{
			json: {
				job_id: jobId,
				file_name: binary.fileName ?? fileName,
				mime_type: binary.mimeType,
				size: data.length,
			},
			binary: { [binaryPropertyName]: binary },
			pairedItem: { item: i },
		},
	];
}

export async function upload(this: IExecuteFunctions, i: number): Promise<Output> {
	const binaryPropertyName = this.getNodeParameter('binaryPropertyName', i) as string;
	const options = this.getNodeParameter('uploadOptions', i, {}) as { fileName?: string };
	const binary = this.helpers.assertBinaryData(i, binaryPropertyName);
	const data = await this.helpers.getBinaryDataBuffer(i, binaryPropertyName);
	const fileName = options.fileName?.trim() || binary.fileName || 'upload.bin';
	const form = multipartFile('file', fileName, binary.mimeType, data);
	const response = await zyraRequest.call(
		this,
		{
			method: 'POST',
			path: UPLOAD_PATH,
			body: form.body,
			headers: { 'Content-Type': form.contentType },
		},
		i,
	);
	return [item(asObject(response.body), i)];
}

export async function getFile(this: IExecuteFunctions, i: number): Promise<Output> {
	const fileId = String(this.getNodeParameter('fileId', i)).trim();
	const response = await zyraRequest.call(
		this,
		{ method: 'GET', path: `/files/${encodeURIComponent(fileId)}` },
		i,
	);
	return [item(asObject(response.body), i)];
}

export const operations: Record<
	string,
	Record<string, (this: IExecuteFunctions, i: number) => Promise<Output>>
> = {
	command: { run, submit, runAndWait },
	job: { get, getAll, cancel, download },
	file: { upload, get: getFile },
};
