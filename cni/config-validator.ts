import { Ajv, type ErrorObject } from 'ajv';
import schema from './config-schema.json' with { type: 'json' };

/**
 * The request-config validator: cni/config-schema.json compiled by ajv. In the bundled plugin
 * (dist/cni/kata-cni.js) this module is replaced by the same schema compiled ahead of time with ajv's
 * standalone code generator (cni/build/bundle.mjs), so a CNI call neither loads ajv nor compiles.
 * Both must be built with the options below.
 */
const AJV_OPTIONS = { allErrors: true, strict: true } as const;

export type ValidateFn = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };

export const validate: ValidateFn = new Ajv(AJV_OPTIONS).compile(schema);
