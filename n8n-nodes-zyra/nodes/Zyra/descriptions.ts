import type { INodeProperties } from 'n8n-workflow';

const commandOperations = ['run', 'submit', 'runAndWait'];
const forCommand = (operation: string[] = commandOperations) => ({
	show: { resource: ['command'], operation },
});
const forJob = (operation: string[]) => ({ show: { resource: ['job'], operation } });
const forFile = (operation: string[]) => ({ show: { resource: ['file'], operation } });

export const resourceProperty: INodeProperties = {
	displayName: 'Resource',
	name: 'resource',
	type: 'options',
	noDataExpression: true,
	options: [
		{ name: 'Command', value: 'command', description: 'Run a Zyra CLI command' },
		{ name: 'File', value: 'file', description: 'An uploaded input file' },
		{ name: 'Job', value: 'job', description: 'A run of a command: status, logs, outputs' },
	],
	default: 'command',
};

const operationProperties: INodeProperties[] = [
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: ['command'] } },
		options: [
			{
				name: 'Run',
				value: 'run',
				description: 'Run a command and answer with its result (synchronous)',
				action: 'Run a command',
			},
			{
				name: 'Run and Wait',
				value: 'runAndWait',
				description: 'Submit a command, then wait for its job to end',
				action: 'Run a command and wait for its job',
			},
			{
				name: 'Submit',
				value: 'submit',
				description: 'Start a command as a job and answer at once with its ID (asynchronous)',
				action: 'Submit a command as a job',
			},
		],
		default: 'run',
	},
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: ['job'] } },
		options: [
			{
				name: 'Cancel',
				value: 'cancel',
				description: 'Cancel a queued or running job',
				action: 'Cancel a job',
			},
			{
				name: 'Download Output',
				value: 'download',
				description: "Download a job's output file as binary data",
				action: 'Download a job output',
			},
			{
				name: 'Get',
				value: 'get',
				description: "Get a job's status, logs and outputs",
				action: 'Get a job',
			},
			{
				name: 'Get Many',
				value: 'getAll',
				description: 'List jobs, newest first',
				action: 'Get many jobs',
			},
		],
		default: 'get',
	},
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: ['file'] } },
		options: [
			{
				name: 'Get',
				value: 'get',
				description: "Get an uploaded file's metadata",
				action: 'Get file metadata',
			},
			{
				name: 'Upload',
				value: 'upload',
				description: 'Upload binary data as an input file for commands',
				action: 'Upload a file',
			},
		],
		default: 'upload',
	},
];

const commandProperties: INodeProperties[] = [
	{
		displayName: 'Stage Name or ID',
		name: 'stage',
		type: 'options',
		typeOptions: { loadOptionsMethod: 'getStages' },
		required: true,
		default: '',
		description:
			'The pipeline stage of the command. Choose from the list, or specify an ID using an <a href="https://docs.n8n.io/code/expressions/">expression</a>.',
		displayOptions: forCommand(),
	},
	{
		displayName: 'Command Name or ID',
		name: 'command',
		type: 'options',
		typeOptions: { loadOptionsMethod: 'getCommands', loadOptionsDependsOn: ['stage'] },
		required: true,
		default: '',
		description:
			'The command to run in that stage. Choose from the list, or specify an ID using an <a href="https://docs.n8n.io/code/expressions/">expression</a>.',
		displayOptions: forCommand(),
	},
	{
		displayName: 'Arguments (JSON)',
		name: 'argumentsJson',
		type: 'json',
		default: '{}',
		description:
			'Argument name → value, e.g. {"input": "file_id:…", "output": "map.png", "no_coastline": true}. Flags are booleans; an uploaded file is "file_id:&lt;ID&gt;" or {"file_id": "&lt;ID&gt;"}.',
		displayOptions: forCommand(),
	},
	{
		displayName: 'Arguments',
		name: 'argumentsUi',
		type: 'fixedCollection',
		typeOptions: { multipleValues: true },
		placeholder: 'Add Argument',
		default: {},
		description: 'Arguments one by one; an argument named here wins over the same one in the JSON',
		displayOptions: forCommand(),
		options: [
			{
				displayName: 'Argument',
				name: 'argument',
				values: [
					{
						displayName: 'Name or ID',
						name: 'name',
						type: 'options',
						typeOptions: {
							loadOptionsMethod: 'getArguments',
							loadOptionsDependsOn: ['stage', 'command'],
						},
						default: '',
						description:
							'The argument, from the command\'s schema (required ones marked "*"). Choose from the list, or specify an ID using an <a href="https://docs.n8n.io/code/expressions/">expression</a>.',
					},
					{
						displayName: 'Value',
						name: 'value',
						type: 'string',
						default: '',
					},
					{
						displayName: 'Type',
						name: 'type',
						type: 'options',
						options: [
							{ name: 'Boolean', value: 'boolean' },
							{ name: 'JSON', value: 'json', description: 'A list, object or null' },
							{ name: 'Number', value: 'number' },
							{ name: 'String', value: 'string' },
						],
						default: 'string',
						description: 'How to read the value',
					},
				],
			},
		],
	},
	{
		displayName: 'Metadata (JSON)',
		name: 'metadata',
		type: 'json',
		default: '{}',
		description:
			'Any JSON object (at most 4 KiB), echoed back in every view of the job (and in its callback), e.g. {"run": "nightly"}',
		displayOptions: forCommand(),
	},
	{
		displayName: 'Timeout (Seconds)',
		name: 'timeout',
		type: 'number',
		typeOptions: { minValue: 0 },
		default: 0,
		description: "How long the command may run; 0 means the service's default",
		displayOptions: forCommand(),
	},
	{
		displayName: 'Fail on Non-Zero Exit',
		name: 'failOnNonZeroExit',
		type: 'boolean',
		default: false,
		description:
			'Whether a command that does not succeed makes the node fail (the service answers 422) instead of returning the job with its failed status',
		displayOptions: forCommand(['run']),
	},
	{
		displayName: 'Callback URL',
		name: 'callbackUrl',
		type: 'string',
		default: '',
		placeholder: '={{ $execution.resumeUrl }}',
		description:
			"Where the service POSTs the job view when the job ends, e.g. a Wait node's resume URL",
		displayOptions: forCommand(['submit']),
	},
	{
		displayName: 'Callback Secret',
		name: 'callbackSecret',
		type: 'string',
		typeOptions: { password: true },
		default: '',
		description:
			'16–256 characters; the callback then carries a Zyra-Signature header (HMAC-SHA256 of "&lt;t&gt;.&lt;body&gt;")',
		displayOptions: forCommand(['submit']),
	},
	{
		displayName: 'Callback Headers',
		name: 'callbackHeaders',
		type: 'fixedCollection',
		typeOptions: { multipleValues: true },
		placeholder: 'Add Header',
		default: {},
		description: "Headers sent with the callback (at most 10), e.g. for a webhook's Header Auth",
		displayOptions: forCommand(['submit']),
		options: [
			{
				displayName: 'Header',
				name: 'header',
				values: [
					{ displayName: 'Name', name: 'name', type: 'string', default: '' },
					{
						displayName: 'Value',
						name: 'value',
						type: 'string',
						typeOptions: { password: true },
						default: '',
					},
				],
			},
		],
	},
	{
		displayName: 'Max Wait (Seconds)',
		name: 'maxWait',
		type: 'number',
		typeOptions: { minValue: 1 },
		default: 600,
		description: 'How long the node waits for the job to end before it fails',
		displayOptions: forCommand(['runAndWait']),
	},
	{
		displayName: 'Options',
		name: 'waitOptions',
		type: 'collection',
		placeholder: 'Add Option',
		default: {},
		displayOptions: forCommand(['runAndWait']),
		options: [
			{
				displayName: 'Cancel Job on Timeout',
				name: 'cancelOnTimeout',
				type: 'boolean',
				default: true,
				description:
					'Whether to cancel the job when Max Wait runs out, rather than leave it running',
			},
			{
				displayName: 'Poll Wait (Seconds)',
				name: 'pollWait',
				type: 'number',
				typeOptions: { minValue: 1, maxValue: 60 },
				default: 30,
				description: 'How long each status request waits on the service for the job to end (1–60)',
			},
		],
	},
];

const jobIdProperty = (operation: string[]): INodeProperties => ({
	displayName: 'Job ID',
	name: 'jobId',
	type: 'string',
	required: true,
	default: '',
	placeholder: '={{ $json.job_id }}',
	displayOptions: forJob(operation),
});

const binaryPropertyName = (
	displayOptions: INodeProperties['displayOptions'],
	description: string,
): INodeProperties => ({
	displayName: 'Input Binary Field',
	name: 'binaryPropertyName',
	type: 'string',
	required: true,
	default: 'data',
	description,
	displayOptions,
});

const jobProperties: INodeProperties[] = [
	jobIdProperty(['get', 'cancel', 'download']),
	{
		displayName: 'Wait (Seconds)',
		name: 'wait',
		type: 'number',
		typeOptions: { minValue: 0, maxValue: 60 },
		default: 0,
		description:
			'Long-poll: answer as soon as the job ends or after this many seconds (0 answers at once)',
		displayOptions: forJob(['get']),
	},
	{
		displayName: 'File Name',
		name: 'file',
		type: 'string',
		default: '',
		placeholder: 'map.png',
		description:
			'Which output to download; empty downloads the only output, or a zip of all of them',
		displayOptions: forJob(['download']),
	},
	{
		...binaryPropertyName(forJob(['download']), 'The binary field to put the downloaded file in'),
		displayName: 'Put Output File in Field',
	},
	{
		displayName: 'Return All',
		name: 'returnAll',
		type: 'boolean',
		default: false,
		description: 'Whether to return all results or only up to a given limit',
		displayOptions: forJob(['getAll']),
	},
	{
		displayName: 'Limit',
		name: 'limit',
		type: 'number',
		typeOptions: { minValue: 1, maxValue: 500 },
		default: 50,
		description: 'Max number of results to return',
		displayOptions: { show: { resource: ['job'], operation: ['getAll'], returnAll: [false] } },
	},
	{
		displayName: 'Filters',
		name: 'filters',
		type: 'collection',
		placeholder: 'Add Filter',
		default: {},
		displayOptions: forJob(['getAll']),
		options: [
			{
				displayName: 'Command',
				name: 'command',
				type: 'string',
				default: '',
				placeholder: 'heatmap',
			},
			{
				displayName: 'Owner',
				name: 'owner',
				type: 'string',
				default: '',
				placeholder: 'key:dev',
				description: 'A principal ID (key:&lt;name&gt;, oauth2:&lt;sub&gt;); seen only by admins',
			},
			{
				displayName: 'Stage',
				name: 'stage',
				type: 'string',
				default: '',
				placeholder: 'visualize',
			},
			{
				displayName: 'Status',
				name: 'status',
				type: 'options',
				options: [
					{ name: 'Cancelled', value: 'cancelled' },
					{ name: 'Failed', value: 'failed' },
					{ name: 'Queued', value: 'queued' },
					{ name: 'Running', value: 'running' },
					{ name: 'Succeeded', value: 'succeeded' },
				],
				default: 'succeeded',
			},
		],
	},
];

const fileProperties: INodeProperties[] = [
	binaryPropertyName(forFile(['upload']), 'The binary field that holds the file to upload'),
	{
		displayName: 'Options',
		name: 'uploadOptions',
		type: 'collection',
		placeholder: 'Add Option',
		default: {},
		displayOptions: forFile(['upload']),
		options: [
			{
				displayName: 'File Name',
				name: 'fileName',
				type: 'string',
				default: '',
				description:
					"The name the service records (its extension tells commands the format); default: the binary data's own",
			},
		],
	},
	{
		displayName: 'File ID',
		name: 'fileId',
		type: 'string',
		required: true,
		default: '',
		placeholder: '={{ $json.file_id }}',
		displayOptions: forFile(['get']),
	},
];

export const nodeProperties: INodeProperties[] = [
	resourceProperty,
	...operationProperties,
	...commandProperties,
	...jobProperties,
	...fileProperties,
];
