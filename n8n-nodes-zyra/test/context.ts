// A stand-in for n8n's execution context: parameters from a plain object, and the HTTP helper
// a mock that records each request and answers from a queue. No network.
import type {
	IBinaryData,
	IDataObject,
	IExecuteFunctions,
	IHttpRequestOptions,
	ILoadOptionsFunctions,
	INode,
	INodeExecutionData,
} from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';

export interface FakeAnswer {
	statusCode?: number;
	headers?: Record<string, string>;
	body?: unknown;
}

export interface FakeOptions {
	items?: INodeExecutionData[];
	continueOnFail?: boolean;
	credentials?: IDataObject;
	cancelSignal?: AbortSignal;
	/** Called as each request is made, before it is answered. */
	onRequest?: (request: IHttpRequestOptions, index: number) => void;
}

export const SERVER = 'http://zyra.test:8000';

export const node: INode = {
	id: 'node-1',
	name: 'Zyra',
	type: 'n8n-nodes-zyra.zyra',
	typeVersion: 1,
	position: [0, 0],
	parameters: {},
};

const EXTENSION_TYPES: Record<string, string> = {
	png: 'image/png',
	zip: 'application/zip',
	json: 'application/json',
};

export function fakeContext(
	params: IDataObject,
	answers: Array<FakeAnswer | Error>,
	options: FakeOptions = {},
) {
	const items: INodeExecutionData[] = options.items ?? [{ json: {} }];
	const requests: IHttpRequestOptions[] = [];
	const credentialTypes: string[] = [];

	const httpRequestWithAuthentication = vi.fn(
		async (credentialType: string, request: IHttpRequestOptions) => {
			credentialTypes.push(credentialType);
			requests.push(request);
			options.onRequest?.(request, requests.length - 1);
			const answer = answers.shift();
			if (answer === undefined)
				throw new Error(`unexpected request: ${request.method} ${request.url}`);
			if (answer instanceof Error) throw answer;
			return { statusCode: 200, headers: {}, body: {}, ...answer };
		},
	);

	const prepareBinaryData = vi.fn(
		async (data: Buffer, fileName?: string, mimeType?: string): Promise<IBinaryData> => {
			const extension = fileName?.split('.').pop() ?? '';
			return {
				data: data.toString('base64'),
				fileName,
				fileExtension: extension,
				mimeType: mimeType ?? EXTENSION_TYPES[extension] ?? 'application/octet-stream',
			};
		},
	);

	const context = {
		getInputData: () => items,
		getNode: () => node,
		getNodeParameter: (name: string, _itemIndex: number, fallback?: unknown) => {
			if (name in params) return params[name];
			if (fallback !== undefined) return fallback;
			throw new Error(`Could not get parameter "${name}"`);
		},
		getCurrentNodeParameter: (name: string) => params[name],
		getCredentials: async () =>
			options.credentials ?? { url: `${SERVER}/`, authType: 'apiKey', apiKey: 'k' },
		continueOnFail: () => options.continueOnFail ?? false,
		getExecutionCancelSignal: () => options.cancelSignal,
		helpers: {
			httpRequestWithAuthentication,
			prepareBinaryData,
			assertBinaryData: (itemIndex: number, property: string) => {
				const binary = items[itemIndex].binary?.[property];
				if (!binary) throw new NodeOperationError(node, `No binary data property "${property}"`);
				return binary;
			},
			getBinaryDataBuffer: async (itemIndex: number, property: string) =>
				Buffer.from(items[itemIndex].binary![property].data, 'base64'),
		},
	};

	return {
		context: context as unknown as IExecuteFunctions & ILoadOptionsFunctions,
		requests,
		credentialTypes,
		httpRequestWithAuthentication,
		prepareBinaryData,
		answersLeft: () => answers.length,
	};
}

/** A job view as the service returns it; fields not given take a finished, successful job's. */
export function jobView(fields: IDataObject = {}): IDataObject {
	return {
		job_id: '0123456789abcdef0123456789abcdef',
		status: 'succeeded',
		exit_code: 0,
		reason: 'Completed',
		stdout: '',
		stderr: '',
		stdout_truncated: false,
		stderr_truncated: false,
		stdout_is_binary: false,
		outputs: [{ name: 'map.png', size: 1234, sha256: 'ab'.repeat(32) }],
		duration_s: 2.5,
		progress: 1,
		mode: 'async',
		stage: 'visualize',
		command: 'heatmap',
		args: {},
		metadata: {},
		submitted_by: 'key:dev',
		owner: 'key:dev',
		created_at: '2026-12-03T08:00:00Z',
		started_at: '2026-12-03T08:00:01Z',
		finished_at: '2026-12-03T08:00:03Z',
		outputs_expired_at: null,
		callback: null,
		...fields,
	};
}
