import { NodeApiError } from 'n8n-workflow';

import {
	describeHttpError,
	errorLine,
	fieldPath,
	httpError,
	isNodeError,
	stderrTail,
} from '../nodes/Zyra/errors';
import { jobView, node } from './context';

describe('describeHttpError', () => {
	it('names the field of a 422 validation problem, without the leading "body"', () => {
		const text = describeHttpError({
			statusCode: 422,
			headers: {},
			body: {
				detail: [{ loc: ['body', 'args', 'input'], msg: 'Field required', type: 'missing' }],
			},
		});
		expect(text.message).toBe('args.input: Field required');
	});

	it('joins several problems and lists them in the description', () => {
		const text = describeHttpError({
			statusCode: 422,
			headers: {},
			body: {
				detail: [
					{ loc: ['body', 'timeout_s'], msg: 'Input should be greater than 0', type: 'x' },
					{ loc: ['body', 'args', 'extent', 1], msg: 'Input should be a number', type: 'y' },
				],
			},
		});
		expect(text.message).toBe(
			'timeout_s: Input should be greater than 0; args.extent.1: Input should be a number',
		);
		expect(text.description).toBe(
			'timeout_s: Input should be greater than 0\nargs.extent.1: Input should be a number',
		);
	});

	it('keeps a location that does not start with body', () => {
		expect(fieldPath(['query', 'limit'])).toBe('query.limit');
		expect(fieldPath(['body'])).toBe('body');
		expect(fieldPath(undefined)).toBe('');
	});

	it('says the msg and the valid names of a 404 unknown command', () => {
		const msg =
			"unknown command 'heatmapp' in stage 'visualize'; valid commands: animate, contour, heatmap";
		const text = describeHttpError({
			statusCode: 404,
			headers: {},
			body: { detail: { msg, field: 'command', valid: ['animate', 'contour', 'heatmap'] } },
		});
		expect(text.message).toBe(msg);
		expect(text.description).toContain('valid commands: animate, contour, heatmap');
	});

	it('adds the valid names when the msg does not list them', () => {
		const text = describeHttpError({
			statusCode: 404,
			headers: {},
			body: {
				detail: { msg: "unknown stage 'paint'", field: 'stage', valid: ['acquire', 'visualize'] },
			},
		});
		expect(text.message).toBe("unknown stage 'paint' (valid stages: acquire, visualize)");
	});

	it('gives the Retry-After of a 429 and of a 503', () => {
		const limited = describeHttpError({
			statusCode: 429,
			headers: { 'retry-after': '12' },
			body: {
				detail: 'rate limit reached for key:dev (10 per 1 minute); retry in 12 s',
				limit: 'run',
			},
		});
		expect(limited.message).toBe(
			'rate limit reached for key:dev (10 per 1 minute); retry in 12 s (Retry-After: 12 s)',
		);
		const down = describeHttpError({
			statusCode: 503,
			headers: { 'Retry-After': 'Wed, 03 Dec 2026 09:00:00 GMT' },
			body: { detail: 'job store unavailable' },
		});
		expect(down.message).toBe('job store unavailable (Retry-After: Wed, 03 Dec 2026 09:00:00 GMT)');
		expect(describeHttpError({ statusCode: 429, headers: {}, body: '' }).message).toBe(
			'Too many requests',
		);
	});

	it('explains a sync run refused for its exit with the detail and the stderr tail', () => {
		const text = describeHttpError({
			statusCode: 422,
			headers: {},
			body: {
				...jobView({
					status: 'failed',
					exit_code: 2,
					reason: 'Error',
					stderr: 'Traceback\nValueError: bad input\n',
				}),
				detail: 'the command exited with code 2',
			},
		});
		expect(text.message).toBe('the command exited with code 2');
		expect(text.description).toBe('Traceback\nValueError: bad input');
	});

	it('falls back to the detail string or the status', () => {
		expect(
			describeHttpError({ statusCode: 404, headers: {}, body: { detail: "no job with id 'x'" } })
				.message,
		).toBe("no job with id 'x'");
		expect(describeHttpError({ statusCode: 500, headers: {}, body: undefined }).message).toBe(
			'The service answered HTTP 500',
		);
	});
});

describe('httpError', () => {
	it('is a NodeApiError with the shaped message, the status and the job view', () => {
		const body = { ...jobView({ status: 'failed', stderr: 'boom' }), detail: 'exit 1' };
		const error = httpError(node, { statusCode: 422, headers: {}, body }, 3);
		expect(error).toBeInstanceOf(NodeApiError);
		expect(isNodeError(error)).toBe(true);
		expect(error.message).toBe('exit 1');
		expect(error.description).toBe('boom');
		expect(error.httpCode).toBe('422');
		expect(error.context.itemIndex).toBe(3);
		expect(error.context.job).toMatchObject({ status: 'failed' });
	});

	it('keeps the shaped message where NodeApiError has a stock one for the status', () => {
		const error = httpError(node, {
			statusCode: 404,
			headers: {},
			body: { detail: { msg: "unknown stage 'x'", field: 'stage', valid: ['run'] } },
		});
		expect(error.message).toBe("unknown stage 'x' (valid stages: run)");
	});
});

describe('stderrTail', () => {
	it('keeps the end of a long stderr, from a line start', () => {
		const lines = Array.from({ length: 500 }, (_, n) => `line ${n}`);
		const tail = stderrTail(lines.join('\n'));
		expect(tail.length).toBeLessThanOrEqual(2000);
		expect(tail.endsWith('line 499')).toBe(true);
		expect(tail.startsWith('line ')).toBe(true);
		expect(stderrTail(undefined)).toBe('');
	});
});

describe('errorLine', () => {
	it('says the line that reads as an error, not a hint printed after it', () => {
		const stderr =
			"ERROR: 'no-such-colormap' is not a valid value for cmap.\n" +
			'See `matplotlib.bivar_colormaps()` for bivariate colormaps\n';
		expect(errorLine(stderr)).toBe("ERROR: 'no-such-colormap' is not a valid value for cmap.");
		expect(errorLine('Traceback\n  File "x"\nValueError: bad\nWARNING: done\n')).toBe(
			'ValueError: bad',
		);
		expect(errorLine('usage: zyra\nzyra: error: argument --cmap: expected one argument\n')).toBe(
			'zyra: error: argument --cmap: expected one argument',
		);
	});

	it('falls back to the last non-blank line', () => {
		expect(errorLine('reading\nno GRIB messages found\n\n  \n')).toBe('no GRIB messages found');
		expect(errorLine('ValueError: bad\nException ignored in: <f>\n')).toBe('ValueError: bad');
		expect(errorLine('')).toBe('');
	});
});
