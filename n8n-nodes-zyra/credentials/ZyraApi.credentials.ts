import type {
	ICredentialDataDecryptedObject,
	ICredentialTestRequest,
	ICredentialType,
	IHttpRequestOptions,
	Icon,
	INodeProperties,
} from 'n8n-workflow';

export class ZyraApi implements ICredentialType {
	name = 'zyraApi';

	displayName = 'Zyra API';

	icon: Icon = { light: 'file:../icons/zyra.svg', dark: 'file:../icons/zyra.dark.svg' };

	documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-zyra#credentials';

	properties: INodeProperties[] = [
		{
			displayName: 'Server URL',
			name: 'url',
			type: 'string',
			default: '',
			placeholder: 'https://zyra.example.org',
			required: true,
			description: 'Where zyra-orchestrator answers, without a trailing path',
		},
		{
			displayName: 'Authentication',
			name: 'authType',
			type: 'options',
			options: [
				{
					name: 'API Key',
					value: 'apiKey',
					description: 'Sent as the X-API-Key header',
				},
				{
					name: 'OAuth2 Bearer Token',
					value: 'bearerToken',
					description: 'An API key or a JWT sent as "Authorization: Bearer"',
				},
			],
			default: 'apiKey',
		},
		{
			displayName: 'API Key',
			name: 'apiKey',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			displayOptions: { show: { authType: ['apiKey'] } },
		},
		{
			displayName: 'Bearer Token',
			name: 'bearerToken',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			displayOptions: { show: { authType: ['bearerToken'] } },
		},
	];

	// A function rather than generic header templates: only the chosen header is sent, never an
	// empty X-API-Key beside a bearer token.
	async authenticate(
		credentials: ICredentialDataDecryptedObject,
		requestOptions: IHttpRequestOptions,
	): Promise<IHttpRequestOptions> {
		const headers = { ...(requestOptions.headers ?? {}) };
		if (credentials.authType === 'bearerToken') {
			headers.Authorization = `Bearer ${String(credentials.bearerToken ?? '')}`;
		} else {
			headers['X-API-Key'] = String(credentials.apiKey ?? '');
		}
		return { ...requestOptions, headers };
	}

	test: ICredentialTestRequest = {
		request: {
			baseURL: '={{ String($credentials.url).replace(/\\/+$/, "") }}',
			url: '/cli/commands',
			method: 'GET',
		},
	};
}
