import type {
	IDataObject,
	IExecuteFunctions,
	IHttpRequestMethods,
	IHttpRequestOptions,
	ILoadOptionsFunctions,
	JsonObject,
} from 'n8n-workflow';
import { NodeApiError, NodeOperationError } from 'n8n-workflow';

import type { ZyraResponse } from './errors';
import { httpError, isNodeError, isObject } from './errors';

export const CREDENTIAL_TYPE = 'zyraApi';

type Context = IExecuteFunctions | ILoadOptionsFunctions;

export interface ZyraRequest {
	method: IHttpRequestMethods;
	/** Starts with `/`; appended to the credential's server URL. */
	path: string;
	qs?: IDataObject;
	/** A JSON object, or raw bytes (then `headers` says their Content-Type). */
	body?: IDataObject | Buffer;
	headers?: IDataObject;
	/** Answer as bytes (downloads) instead of JSON. */
	binary?: boolean;
	timeoutMs?: number;
	/** Ends the request when the n8n execution is cancelled. */
	abortSignal?: AbortSignal;
}

/** The server URL of the credential, without a trailing slash. */
export async function serverUrl(this: Context): Promise<string> {
	const credentials = await this.getCredentials(CREDENTIAL_TYPE);
	return String(credentials.url ?? '')
		.trim()
		.replace(/\/+$/, '');
}

/** An error answer's body as JSON where it is JSON (a download's error comes as bytes). */
function decodeBody(body: unknown): unknown {
	let text: string | undefined;
	if (Buffer.isBuffer(body)) text = body.toString('utf8');
	else if (body instanceof ArrayBuffer) text = Buffer.from(body).toString('utf8');
	else if (typeof body === 'string') text = body;
	if (text === undefined) return body;
	try {
		return JSON.parse(text);
	} catch {
		return text;
	}
}

/**
 * One request to the service through n8n's credential-aware helper. HTTP error statuses
 * do not throw inside the helper (`ignoreHttpStatusErrors`) so that the answer's body and
 * headers reach describeHttpError, which names the field at fault.
 */
export async function zyraRequest<T = unknown>(
	this: Context,
	request: ZyraRequest,
	itemIndex = 0,
): Promise<ZyraResponse<T>> {
	const isBytes = Buffer.isBuffer(request.body);
	const options: IHttpRequestOptions = {
		method: request.method,
		url: `${await serverUrl.call(this)}${request.path}`,
		headers: { Accept: request.binary ? '*/*' : 'application/json', ...request.headers },
		returnFullResponse: true,
		ignoreHttpStatusErrors: true,
	};
	if (request.qs && Object.keys(request.qs).length > 0) options.qs = request.qs;
	if (request.body !== undefined) options.body = request.body;
	if (!isBytes && !request.binary) options.json = true;
	if (request.binary) options.encoding = 'arraybuffer';
	if (request.timeoutMs !== undefined) options.timeout = request.timeoutMs;
	if (request.abortSignal !== undefined) options.abortSignal = request.abortSignal;

	let raw: unknown;
	try {
		raw = await this.helpers.httpRequestWithAuthentication.call(this, CREDENTIAL_TYPE, options);
	} catch (error) {
		if (isNodeError(error)) throw error;
		throw new NodeApiError(this.getNode(), error as JsonObject, { itemIndex });
	}
	if (!isObject(raw) || typeof raw.statusCode !== 'number') {
		throw new NodeOperationError(this.getNode(), 'The HTTP helper gave no status code', {
			itemIndex,
		});
	}
	const response: ZyraResponse<T> = {
		statusCode: raw.statusCode,
		headers: isObject(raw.headers) ? raw.headers : {},
		body: raw.body as T,
	};
	if (response.statusCode >= 400) {
		throw httpError(this.getNode(), { ...response, body: decodeBody(response.body) }, itemIndex);
	}
	if (!request.binary && typeof response.body === 'string') {
		response.body = decodeBody(response.body) as T;
	}
	return response;
}
