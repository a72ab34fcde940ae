import type {
	IDataObject,
	IExecuteFunctions,
	INodeExecutionData,
	INodeType,
	INodeTypeDescription,
} from 'n8n-workflow';
import { NodeConnectionTypes, NodeOperationError } from 'n8n-workflow';

import { loadOptions } from './catalog';
import { nodeProperties } from './descriptions';
import { isNodeError, isObject, operationError } from './errors';
import { operations } from './operations';

export class Zyra implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Zyra',
		name: 'zyra',
		icon: { light: 'file:../../icons/zyra.svg', dark: 'file:../../icons/zyra.dark.svg' },
		group: ['transform'],
		version: 1,
		subtitle: '={{$parameter["operation"] + ": " + $parameter["resource"]}}',
		description: "Run Zyra's CLI commands (acquire, process, visualize, disseminate) as a service",
		defaults: { name: 'Zyra' },
		usableAsTool: true,
		inputs: [NodeConnectionTypes.Main],
		outputs: [NodeConnectionTypes.Main],
		credentials: [{ name: 'zyraApi', required: true }],
		properties: nodeProperties,
	};

	methods = { loadOptions };

	async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
		const items = this.getInputData();
		const output: INodeExecutionData[] = [];
		for (let i = 0; i < items.length; i++) {
			try {
				const resource = this.getNodeParameter('resource', i) as string;
				const operation = this.getNodeParameter('operation', i) as string;
				const handler = operations[resource]?.[operation];
				if (!handler) {
					throw new NodeOperationError(
						this.getNode(),
						`The operation "${operation}" of "${resource}" is not supported`,
						{ itemIndex: i },
					);
				}
				output.push(...(await handler.call(this, i)));
			} catch (error) {
				const shaped = isNodeError(error)
					? error
					: operationError(this.getNode(), (error as Error).message, { itemIndex: i });
				if (!this.continueOnFail()) throw shaped;
				const context = (shaped as { context?: IDataObject }).context;
				const job = isObject(context?.job) ? context.job : {};
				output.push({
					json: { ...job, error: (shaped as Error).message },
					pairedItem: { item: i },
				});
			}
		}
		return [output];
	}
}
