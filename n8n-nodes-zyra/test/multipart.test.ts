import { contentDispositionFileName, multipartFile } from '../nodes/Zyra/multipart';

describe('multipartFile', () => {
	it('wraps the bytes unchanged in one form-data part named "file"', () => {
		const data = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x00, 0xff, 0x0d, 0x0a]);
		const form = multipartFile(
			'file',
			'grid "1".npy',
			'application/octet-stream',
			data,
			'BOUNDARY',
		);
		expect(form.contentType).toBe('multipart/form-data; boundary=BOUNDARY');
		const head =
			'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="grid \\"1\\".npy"\r\n' +
			'Content-Type: application/octet-stream\r\n\r\n';
		expect(form.body.subarray(0, head.length).toString('utf8')).toBe(head);
		expect(form.body.subarray(head.length, head.length + data.length).equals(data)).toBe(true);
		expect(form.body.subarray(head.length + data.length).toString('utf8')).toBe(
			'\r\n--BOUNDARY--\r\n',
		);
	});

	it('draws a fresh boundary each time', () => {
		const a = multipartFile('file', 'a', '', Buffer.alloc(0));
		const b = multipartFile('file', 'a', '', Buffer.alloc(0));
		expect(a.contentType).not.toBe(b.contentType);
		expect(a.body.toString()).toContain('Content-Type: application/octet-stream');
	});
});

describe('contentDispositionFileName', () => {
	it.each([
		['attachment; filename="map.png"', 'map.png'],
		['attachment; filename=outputs.zip', 'outputs.zip'],
		['attachment; filename="a \\"b\\".txt"', 'a "b".txt'],
		[
			'attachment; filename="fallback.png"; filename*=UTF-8\'\'carte%20%C3%A9t%C3%A9.png',
			'carte été.png',
		],
		['inline', undefined],
		[undefined, undefined],
	])('%s → %s', (value, expected) => {
		expect(contentDispositionFileName(value)).toBe(expected);
	});
});
