import { randomBytes } from 'crypto';

export interface MultipartBody {
	body: Buffer;
	contentType: string;
}

/** A file name safe inside a quoted header parameter (RFC 7578 leaves escaping loose). */
function quoted(value: string): string {
	return value
		.replace(/[\r\n]/g, ' ')
		.replace(/\\/g, '\\\\')
		.replace(/"/g, '\\"');
}

/**
 * One file as multipart/form-data, built here rather than with a form-data package: a
 * community node may not bring dependencies, and a Buffer body passes through n8n's
 * HTTP helper unchanged in every version.
 */
export function multipartFile(
	field: string,
	fileName: string,
	mimeType: string,
	data: Buffer,
	boundary = `----n8nZyra${randomBytes(12).toString('hex')}`,
): MultipartBody {
	const head =
		`--${boundary}\r\n` +
		`Content-Disposition: form-data; name="${quoted(field)}"; filename="${quoted(fileName)}"\r\n` +
		`Content-Type: ${mimeType || 'application/octet-stream'}\r\n\r\n`;
	const tail = `\r\n--${boundary}--\r\n`;
	return {
		body: Buffer.concat([Buffer.from(head, 'utf8'), data, Buffer.from(tail, 'utf8')]),
		contentType: `multipart/form-data; boundary=${boundary}`,
	};
}

/** The file name of a Content-Disposition header (RFC 6266: filename* wins over filename). */
export function contentDispositionFileName(value: string | undefined): string | undefined {
	if (!value) return undefined;
	const extended = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(value);
	if (extended) {
		try {
			return decodeURIComponent(extended[2].trim());
		} catch {
			// A malformed escape: fall back to the plain parameter.
		}
	}
	const plain = /filename\s*=\s*("((?:\\.|[^"\\])*)"|[^;]+)/i.exec(value);
	if (!plain) return undefined;
	const name = plain[2] !== undefined ? plain[2].replace(/\\(.)/g, '$1') : plain[1].trim();
	return name || undefined;
}
