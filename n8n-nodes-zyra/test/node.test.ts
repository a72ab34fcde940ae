import type { IDataObject, INodeExecutionData } from 'n8n-workflow';
import { NodeApiError, NodeOperationError } from 'n8n-workflow';

import { Zyra } from '../nodes/Zyra/Zyra.node';
import { fakeContext, jobView, SERVER } from './context';

const JOB_ID = '0123456789abcdef0123456789abcdef';

async function execute(fake: ReturnType<typeof fakeContext>): Promise<INodeExecutionData[]> {
	const [output] = await new Zyra().execute.call(fake.context);
	return output;
}

/** Runs the node under fake timers: Run and Wait's pauses and deadline pass at once. */
async function executeWithFakeClock(fake: ReturnType<typeof fakeContext>) {
	vi.useFakeTimers();
	try {
		const result = execute(fake);
		result.catch(() => undefined); // awaited below; keeps an early rejection from being unhandled
		await vi.runAllTimersAsync();
		return await result;
	} finally {
		vi.useRealTimers();
	}
}

const heatmap: IDataObject = {
	resource: 'command',
	stage: 'visualize',
	command: 'heatmap',
	argumentsJson: '{"input": "file_id:f1", "output": "map.png"}',
	argumentsUi: {
		argument: [
			{ name: 'no_coastline', value: 'true', type: 'boolean' },
			{ name: 'width', value: '800', type: 'number' },
		],
	},
	metadata: '{"run": "nightly"}',
	timeout: 120,
};

const heatmapArgs = { input: 'file_id:f1', output: 'map.png', no_coastline: true, width: 800 };

describe('Command → Run', () => {
	it('POSTs /cli/run sync with the args, metadata, timeout and fail_on_nonzero_exit', async () => {
		const view = jobView({ mode: 'sync', args: heatmapArgs, metadata: { run: 'nightly' } });
		const fake = fakeContext({ ...heatmap, operation: 'run', failOnNonZeroExit: true }, [
			{ body: view },
		]);
		const output = await execute(fake);

		expect(fake.credentialTypes).toEqual(['zyraApi']);
		expect(fake.requests[0]).toMatchObject({
			method: 'POST',
			url: `${SERVER}/cli/run`,
			json: true,
			timeout: 180_000,
			body: {
				stage: 'visualize',
				command: 'heatmap',
				args: heatmapArgs,
				mode: 'sync',
				metadata: { run: 'nightly' },
				timeout_s: 120,
				fail_on_nonzero_exit: true,
			},
		});
		expect(output).toEqual([{ json: view, pairedItem: { item: 0 } }]);
	});

	it('sends only what is set', async () => {
		const fake = fakeContext(
			{ resource: 'command', operation: 'run', stage: 'run', command: 'run', argumentsJson: '{}' },
			[{ body: jobView() }],
		);
		await execute(fake);
		expect(fake.requests[0].body).toEqual({ stage: 'run', command: 'run', args: {}, mode: 'sync' });
		expect(fake.requests[0].timeout).toBeUndefined();
	});

	it('returns a failed job as output when Fail on Non-Zero Exit is off', async () => {
		const view = jobView({ status: 'failed', exit_code: 1, stderr: 'oops' });
		const fake = fakeContext({ ...heatmap, operation: 'run', failOnNonZeroExit: false }, [
			{ body: view },
		]);
		const [item] = await execute(fake);
		expect(item.json.status).toBe('failed');
		expect(fake.requests[0].body).not.toHaveProperty('fail_on_nonzero_exit');
	});

	it('fails with the detail and stderr tail of a 422 job view', async () => {
		const body = {
			...jobView({ status: 'failed', exit_code: 3, stderr: 'Traceback\nKeyError: var\n' }),
			detail: 'visualize heatmap failed: exit code 3 (Error): FileExistsError: map.png',
		};
		const fake = fakeContext({ ...heatmap, operation: 'run', failOnNonZeroExit: true }, [
			{ statusCode: 422, body },
		]);
		const error = await execute(fake).catch((e: unknown) => e);
		expect(error).toBeInstanceOf(NodeApiError);
		// "FileExistsError" holds "EEXIST", which n8n would swap for a stock message.
		expect((error as NodeApiError).message).toBe(
			'visualize heatmap failed: exit code 3 (Error): FileExistsError: map.png',
		);
		expect((error as NodeApiError).description).toBe('Traceback\nKeyError: var');
		expect((error as NodeApiError).httpCode).toBe('422');
	});

	it('outputs the job view with the error under Continue on Fail', async () => {
		const body = { ...jobView({ status: 'failed', exit_code: 3 }), detail: 'failed' };
		const fake = fakeContext(
			{ ...heatmap, operation: 'run', failOnNonZeroExit: true },
			[{ statusCode: 422, body }],
			{ continueOnFail: true },
		);
		const [item] = await execute(fake);
		expect(item.json).toMatchObject({
			job_id: JOB_ID,
			status: 'failed',
			exit_code: 3,
			error: 'failed',
		});
		expect(item.pairedItem).toEqual({ item: 0 });
	});

	it('names the field of a 422 validation error', async () => {
		const fake = fakeContext({ ...heatmap, operation: 'run' }, [
			{
				statusCode: 422,
				body: {
					detail: [{ loc: ['body', 'args', 'input'], msg: 'Field required', type: 'missing' }],
				},
			},
		]);
		await expect(execute(fake)).rejects.toThrow('args.input: Field required');
	});

	it('names the valid commands of a 404', async () => {
		const msg = "unknown command 'heatmapp' in stage 'visualize'; valid commands: contour, heatmap";
		const fake = fakeContext({ ...heatmap, operation: 'run', command: 'heatmapp' }, [
			{
				statusCode: 404,
				body: { detail: { msg, field: 'command', valid: ['contour', 'heatmap'] } },
			},
		]);
		await expect(execute(fake)).rejects.toThrow(msg);
	});

	it('gives the Retry-After of a 429', async () => {
		const fake = fakeContext({ ...heatmap, operation: 'run' }, [
			{ statusCode: 429, headers: { 'retry-after': '7' }, body: { detail: 'too many sync runs' } },
		]);
		await expect(execute(fake)).rejects.toThrow('too many sync runs (Retry-After: 7 s)');
	});

	it('refuses arguments that are not a JSON object before asking the service', async () => {
		const fake = fakeContext({ ...heatmap, operation: 'run', argumentsJson: '{"input"' }, []);
		const error = await execute(fake).catch((e: unknown) => e);
		expect(error).toBeInstanceOf(NodeOperationError);
		expect((error as Error).message).toMatch(/^Arguments \(JSON\) is not valid JSON/);
		expect(fake.requests).toHaveLength(0);
	});

	it('wraps a network failure as a NodeApiError', async () => {
		const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8000'), {
			code: 'ECONNREFUSED',
		});
		const fake = fakeContext({ ...heatmap, operation: 'run' }, [refused]);
		await expect(execute(fake)).rejects.toBeInstanceOf(NodeApiError);
	});
});

describe('Command → Submit', () => {
	it('POSTs /cli/run async with the callback URL, secret and headers', async () => {
		const fake = fakeContext(
			{
				...heatmap,
				operation: 'submit',
				failOnNonZeroExit: true, // a Run-only field: not sent
				callbackUrl: 'http://127.0.0.1:5678/webhook-waiting/42',
				callbackSecret: 's'.repeat(32),
				callbackHeaders: { header: [{ name: 'X-N8N-Auth', value: 'hook-secret' }] },
			},
			[{ statusCode: 202, body: { status: 'accepted', job_id: JOB_ID } }],
		);
		const output = await execute(fake);
		expect(fake.requests[0].body).toEqual({
			stage: 'visualize',
			command: 'heatmap',
			args: heatmapArgs,
			mode: 'async',
			metadata: { run: 'nightly' },
			timeout_s: 120,
			callback_url: 'http://127.0.0.1:5678/webhook-waiting/42',
			callback_secret: 's'.repeat(32),
			callback_headers: { 'X-N8N-Auth': 'hook-secret' },
		});
		expect(output[0].json).toEqual({ status: 'accepted', job_id: JOB_ID });
	});

	it('sends no callback fields when none are set', async () => {
		const fake = fakeContext({ ...heatmap, operation: 'submit' }, [
			{ statusCode: 202, body: { status: 'accepted', job_id: JOB_ID } },
		]);
		await execute(fake);
		expect(Object.keys(fake.requests[0].body as IDataObject).sort()).toEqual([
			'args',
			'command',
			'metadata',
			'mode',
			'stage',
			'timeout_s',
		]);
	});
});

describe('Command → Run and Wait', () => {
	const accepted = { statusCode: 202, body: { status: 'accepted', job_id: JOB_ID } };

	it('submits, then long-polls GET /jobs/{id}?wait= until the job ends', async () => {
		const done = jobView({ args: heatmapArgs });
		const fake = fakeContext(
			{ ...heatmap, operation: 'runAndWait', maxWait: 600, waitOptions: {} },
			[
				accepted,
				{ body: jobView({ status: 'queued', exit_code: null }) },
				{ body: jobView({ status: 'running', exit_code: null }) },
				{ body: done },
			],
		);
		const output = await executeWithFakeClock(fake);

		expect(fake.requests[0]).toMatchObject({ method: 'POST', url: `${SERVER}/cli/run` });
		expect((fake.requests[0].body as IDataObject).mode).toBe('async');
		for (const poll of fake.requests.slice(1)) {
			expect(poll).toMatchObject({
				method: 'GET',
				url: `${SERVER}/jobs/${JOB_ID}`,
				qs: { wait: 30 },
			});
			expect(poll.timeout).toBe(60_000);
		}
		expect(fake.requests).toHaveLength(4);
		expect(output).toEqual([{ json: done, pairedItem: { item: 0 } }]);
	});

	it('asks for no longer than Max Wait leaves, and honours Poll Wait', async () => {
		const fake = fakeContext(
			{ ...heatmap, operation: 'runAndWait', maxWait: 5, waitOptions: { pollWait: 10 } },
			[accepted, { body: jobView() }],
		);
		await executeWithFakeClock(fake);
		expect(fake.requests[1].qs).toEqual({ wait: 5 });
	});

	it('fails with the stderr tail of a job that did not succeed', async () => {
		// "FileNotFoundError" holds "ENOTFOUND": n8n would swap the message for a network one.
		const stderr =
			"Loading input\nTraceback (most recent call last):\nFileNotFoundError: [Errno 2] No such file or directory: 'missing.npy'\n";
		const fake = fakeContext({ ...heatmap, operation: 'runAndWait', maxWait: 600 }, [
			accepted,
			{ body: jobView({ status: 'failed', exit_code: 1, reason: 'Error', stderr }) },
		]);
		const error = await executeWithFakeClock(fake).catch((e: unknown) => e);
		expect(error).toBeInstanceOf(NodeOperationError);
		expect((error as NodeOperationError).message).toBe(
			`Zyra job ${JOB_ID} did not succeed (status failed, exit code 1, reason Error): FileNotFoundError: [Errno 2] No such file or directory: 'missing.npy'`,
		);
		expect((error as NodeOperationError).description).toBe(stderr.trimEnd());
	});

	it('outputs the failed job with the error under Continue on Fail', async () => {
		const fake = fakeContext(
			{ ...heatmap, operation: 'runAndWait', maxWait: 600 },
			[accepted, { body: jobView({ status: 'cancelled', exit_code: null, reason: 'Cancelled' }) }],
			{ continueOnFail: true },
		);
		const [item] = await executeWithFakeClock(fake);
		expect(item.json.status).toBe('cancelled');
		expect(item.json.error).toMatch(/did not succeed \(status cancelled, reason Cancelled\)/);
	});

	it('cancels the job and fails when Max Wait runs out', async () => {
		const running = { body: jobView({ status: 'running', exit_code: null }) };
		const fake = fakeContext({ ...heatmap, operation: 'runAndWait', maxWait: 3 }, [
			accepted,
			running,
			running,
			running,
			{
				body: { job_id: JOB_ID, status: 'cancelled', cancelled: true, message: 'cancel requested' },
			},
		]);
		const error = await executeWithFakeClock(fake).catch((e: unknown) => e);
		expect((error as Error).message).toBe(
			`Zyra job ${JOB_ID} did not end within 3 s (status running); cancel requested`,
		);
		const last = fake.requests[fake.requests.length - 1];
		expect(last).toMatchObject({ method: 'DELETE', url: `${SERVER}/jobs/${JOB_ID}` });
		// Polls answered at once are a second apart: 3 s hold 3 polls, then the cancel.
		expect(fake.requests.map((r) => r.method)).toEqual(['POST', 'GET', 'GET', 'GET', 'DELETE']);
		expect(fake.answersLeft()).toBe(0);
	});

	it('stops waiting when the n8n execution is cancelled, and passes the signal on', async () => {
		const controller = new AbortController();
		const fake = fakeContext(
			{ ...heatmap, operation: 'runAndWait', maxWait: 600 },
			[accepted, { body: jobView({ status: 'running', exit_code: null }) }],
			{
				cancelSignal: controller.signal,
				onRequest: (_request, index) => index === 1 && controller.abort(),
			},
		);
		const error = await executeWithFakeClock(fake).catch((e: unknown) => e);
		expect((error as Error).message).toBe(
			`The execution was cancelled while waiting for Zyra job ${JOB_ID}; the job goes on`,
		);
		expect(fake.requests[1].abortSignal).toBe(controller.signal);
		expect(fake.requests.map((r) => r.method)).toEqual(['POST', 'GET']);
	});

	it('leaves the job running when told not to cancel it', async () => {
		const running = { body: jobView({ status: 'running', exit_code: null }) };
		const fake = fakeContext(
			{ ...heatmap, operation: 'runAndWait', maxWait: 2, waitOptions: { cancelOnTimeout: false } },
			[accepted, running, running],
		);
		const error = await executeWithFakeClock(fake).catch((e: unknown) => e);
		expect((error as Error).message).toMatch(
			/did not end within 2 s \(status running\); it is left running$/,
		);
		expect(fake.requests.map((r) => r.method)).toEqual(['POST', 'GET', 'GET']);
	});
});

describe('Job operations', () => {
	it('Get: GET /jobs/{id} with an optional long-poll wait', async () => {
		const fake = fakeContext(
			{ resource: 'job', operation: 'get', jobId: ` ${JOB_ID} `, wait: 20 },
			[{ body: jobView() }],
		);
		const [item] = await execute(fake);
		expect(fake.requests[0]).toMatchObject({
			method: 'GET',
			url: `${SERVER}/jobs/${JOB_ID}`,
			qs: { wait: 20 },
			timeout: 50_000,
		});
		expect(item.json.job_id).toBe(JOB_ID);
	});

	it('Get: an unknown job fails with the service detail', async () => {
		const fake = fakeContext({ resource: 'job', operation: 'get', jobId: 'nope' }, [
			{ statusCode: 404, body: { detail: "no job with id 'nope'" } },
		]);
		await expect(execute(fake)).rejects.toThrow("no job with id 'nope'");
		expect(fake.requests[0].qs).toBeUndefined();
	});

	it('Get Many: filters, and a limit spread over pages', async () => {
		const fake = fakeContext(
			{
				resource: 'job',
				operation: 'getAll',
				returnAll: false,
				limit: 3,
				filters: { status: 'failed', stage: 'visualize', command: '' },
			},
			[
				{ body: { jobs: [jobView({ job_id: 'a' }), jobView({ job_id: 'b' })], next_cursor: 'c1' } },
				{ body: { jobs: [jobView({ job_id: 'c' })], next_cursor: 'c2' } },
			],
		);
		const output = await execute(fake);
		expect(output.map((i) => i.json.job_id)).toEqual(['a', 'b', 'c']);
		expect(fake.requests[0]).toMatchObject({
			method: 'GET',
			url: `${SERVER}/jobs`,
			qs: { status: 'failed', stage: 'visualize', limit: 3 },
		});
		expect(fake.requests[1].qs).toEqual({
			status: 'failed',
			stage: 'visualize',
			limit: 1,
			cursor: 'c1',
		});
		expect(output.map((i) => i.pairedItem)).toEqual([{ item: 0 }, { item: 0 }, { item: 0 }]);
	});

	it('Get Many: Return All follows next_cursor to the end', async () => {
		const fake = fakeContext(
			{ resource: 'job', operation: 'getAll', returnAll: true, filters: {} },
			[
				{ body: { jobs: [jobView({ job_id: 'a' })], next_cursor: 'c1' } },
				{ body: { jobs: [jobView({ job_id: 'b' })], next_cursor: 'c2' } },
				{ body: { jobs: [], next_cursor: null } },
			],
		);
		const output = await execute(fake);
		expect(output.map((i) => i.json.job_id)).toEqual(['a', 'b']);
		expect(fake.requests.map((r) => r.qs)).toEqual([
			{ limit: 500 },
			{ limit: 500, cursor: 'c1' },
			{ limit: 500, cursor: 'c2' },
		]);
	});

	it('Cancel: DELETE /jobs/{id}', async () => {
		const answer = {
			job_id: JOB_ID,
			status: 'running',
			cancelled: true,
			message: 'cancel requested',
		};
		const fake = fakeContext({ resource: 'job', operation: 'cancel', jobId: JOB_ID }, [
			{ body: answer },
		]);
		const [item] = await execute(fake);
		expect(fake.requests[0]).toMatchObject({ method: 'DELETE', url: `${SERVER}/jobs/${JOB_ID}` });
		expect(item.json).toEqual(answer);
	});

	it('Download: one named output as binary data with its file name and type', async () => {
		const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
		const fake = fakeContext(
			{
				resource: 'job',
				operation: 'download',
				jobId: JOB_ID,
				file: 'map.png',
				binaryPropertyName: 'image',
			},
			[
				{
					headers: {
						'content-type': 'image/png',
						'content-disposition': 'attachment; filename="map.png"',
					},
					body: png,
				},
			],
		);
		const [item] = await execute(fake);
		expect(fake.requests[0]).toMatchObject({
			method: 'GET',
			url: `${SERVER}/jobs/${JOB_ID}/download`,
			qs: { file: 'map.png' },
			encoding: 'arraybuffer',
		});
		expect(fake.requests[0].json).toBeUndefined();
		expect(fake.prepareBinaryData).toHaveBeenCalledWith(png, 'map.png', 'image/png');
		expect(item.binary?.image).toMatchObject({ fileName: 'map.png', mimeType: 'image/png' });
		expect(Buffer.from(item.binary!.image.data, 'base64').equals(png)).toBe(true);
		expect(item.json).toEqual({
			job_id: JOB_ID,
			file_name: 'map.png',
			mime_type: 'image/png',
			size: 8,
		});
	});

	it('Download: several outputs come as the zip the service names', async () => {
		const fake = fakeContext(
			{
				resource: 'job',
				operation: 'download',
				jobId: JOB_ID,
				file: '',
				binaryPropertyName: 'data',
			},
			[
				{
					headers: {
						'Content-Type': 'application/octet-stream',
						'Content-Disposition': `attachment; filename="${JOB_ID}.zip"`,
					},
					body: Buffer.from('PK\u0003\u0004'),
				},
			],
		);
		const [item] = await execute(fake);
		expect(fake.requests[0].qs).toBeUndefined();
		// A generic type is left for n8n to guess from the name.
		expect(fake.prepareBinaryData).toHaveBeenCalledWith(
			expect.any(Buffer),
			`${JOB_ID}.zip`,
			undefined,
		);
		expect(item.binary?.data.mimeType).toBe('application/zip');
	});

	it('Download: an error answer in bytes is read as JSON', async () => {
		const fake = fakeContext(
			{
				resource: 'job',
				operation: 'download',
				jobId: JOB_ID,
				file: 'x.png',
				binaryPropertyName: 'data',
			},
			[{ statusCode: 404, body: Buffer.from('{"detail": "no output named \'x.png\'"}') }],
		);
		await expect(execute(fake)).rejects.toThrow("no output named 'x.png'");
	});
});

describe('File operations', () => {
	const npy = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0xff, 0x00]);
	const input: INodeExecutionData = {
		json: {},
		binary: {
			data: {
				data: npy.toString('base64'),
				fileName: 'grid.npy',
				mimeType: 'application/octet-stream',
			},
		},
	};
	const meta = {
		file_id: 'f'.repeat(32),
		filename: 'grid.npy',
		size: 10,
		sha256: 'cd'.repeat(32),
		created_at: '2026-12-03T08:00:00Z',
		owner: 'key:dev',
	};

	it('Upload: POSTs /upload as multipart with the field "file", and outputs the metadata', async () => {
		const fake = fakeContext(
			{ resource: 'file', operation: 'upload', binaryPropertyName: 'data', uploadOptions: {} },
			[{ statusCode: 201, body: meta }],
			{ items: [input] },
		);
		const [item] = await execute(fake);
		const request = fake.requests[0];
		expect(request).toMatchObject({ method: 'POST', url: `${SERVER}/upload` });
		expect(request.json).toBeUndefined();
		const contentType = String((request.headers as IDataObject)['Content-Type']);
		const boundary = /^multipart\/form-data; boundary=(.+)$/.exec(contentType)?.[1];
		expect(boundary).toBeTruthy();
		const body = request.body as Buffer;
		const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="grid.npy"\r\nContent-Type: application/octet-stream\r\n\r\n`;
		expect(body.subarray(0, head.length).toString()).toBe(head);
		expect(body.subarray(head.length, head.length + npy.length).equals(npy)).toBe(true);
		expect(body.subarray(head.length + npy.length).toString()).toBe(`\r\n--${boundary}--\r\n`);
		expect(item).toEqual({ json: meta, pairedItem: { item: 0 } });
	});

	it('Upload: an error is not retried', async () => {
		const fake = fakeContext(
			{ resource: 'file', operation: 'upload', binaryPropertyName: 'data', uploadOptions: {} },
			[{ statusCode: 413, body: { detail: 'larger than ZYRA_MAX_UPLOAD_MB (100)' } }],
			{ items: [input] },
		);
		await expect(execute(fake)).rejects.toThrow('larger than ZYRA_MAX_UPLOAD_MB (100)');
		expect(fake.requests).toHaveLength(1);
	});

	it('Upload: the file name can be given', async () => {
		const fake = fakeContext(
			{
				resource: 'file',
				operation: 'upload',
				binaryPropertyName: 'data',
				uploadOptions: { fileName: 'sst.npy' },
			},
			[{ statusCode: 201, body: meta }],
			{ items: [input] },
		);
		await execute(fake);
		expect((fake.requests[0].body as Buffer).toString('latin1')).toContain('filename="sst.npy"');
	});

	it('Upload: a missing binary field fails before any request', async () => {
		const fake = fakeContext(
			{ resource: 'file', operation: 'upload', binaryPropertyName: 'other', uploadOptions: {} },
			[],
			{ items: [input] },
		);
		await expect(execute(fake)).rejects.toThrow('No binary data property "other"');
		expect(fake.requests).toHaveLength(0);
	});

	it('Get: GET /files/{id}', async () => {
		const fake = fakeContext({ resource: 'file', operation: 'get', fileId: meta.file_id }, [
			{ body: meta },
		]);
		const [item] = await execute(fake);
		expect(fake.requests[0]).toMatchObject({
			method: 'GET',
			url: `${SERVER}/files/${meta.file_id}`,
		});
		expect(item.json).toEqual(meta);
	});
});

describe('several items', () => {
	it('handles each item and pairs each output with it', async () => {
		const fake = fakeContext(
			{ resource: 'job', operation: 'cancel', jobId: JOB_ID },
			[{ body: { cancelled: true } }, { statusCode: 404, body: { detail: 'gone' } }],
			{ items: [{ json: {} }, { json: {} }], continueOnFail: true },
		);
		const output = await execute(fake);
		expect(output).toEqual([
			{ json: { cancelled: true }, pairedItem: { item: 0 } },
			{ json: { error: 'gone' }, pairedItem: { item: 1 } },
		]);
	});
});
