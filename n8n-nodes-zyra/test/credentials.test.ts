import type { IHttpRequestOptions } from 'n8n-workflow';

import { ZyraApi } from '../credentials/ZyraApi.credentials';
import { Zyra } from '../nodes/Zyra/Zyra.node';

const request: IHttpRequestOptions = {
	url: 'http://zyra.test/jobs',
	headers: { Accept: 'application/json' },
};

describe('zyraApi credential', () => {
	const credential = new ZyraApi();

	it('sends an API key as X-API-Key and nothing else', async () => {
		const signed = await credential.authenticate(
			{ authType: 'apiKey', apiKey: 'local-dev-key' },
			request,
		);
		expect(signed.headers).toEqual({ Accept: 'application/json', 'X-API-Key': 'local-dev-key' });
		expect(request.headers).toEqual({ Accept: 'application/json' });
	});

	it('sends a bearer token as Authorization: Bearer', async () => {
		const signed = await credential.authenticate(
			{ authType: 'bearerToken', bearerToken: 'eyJ.jwt.sig', apiKey: 'stale' },
			request,
		);
		expect(signed.headers).toEqual({
			Accept: 'application/json',
			Authorization: 'Bearer eyJ.jwt.sig',
		});
	});

	it('tests itself with GET /cli/commands on the server URL', () => {
		const test = credential.test.request;
		expect(test.url).toBe('/cli/commands');
		expect(test.method).toBe('GET');
		// The base URL is an n8n expression; evaluate its body as n8n would, for a URL with a slash.
		const expression = String(test.baseURL)
			.replace(/^=\{\{/, '')
			.replace(/\}\}$/, '');
		const evaluate = new Function('$credentials', `return ${expression}`);
		expect(evaluate({ url: 'https://zyra.example.org//' })).toBe('https://zyra.example.org');
	});

	it('is the one credential the node asks for', () => {
		expect(new Zyra().description.credentials).toEqual([{ name: credential.name, required: true }]);
	});
});
