import type { MessageInfo } from './consumer-definition.js';
import { PayloadSchemaError } from './payload-schema-error.js';

/** One problem a schema found, as the Standard Schema interface reports it. */
export interface SchemaIssue {
  readonly message: string;
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

/** What a schema's check returns: the parsed value, or the problems. */
export type SchemaResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<SchemaIssue> };

/**
 * A schema of any library implementing the Standard Schema interface (version 1): zod 3.24+
 * and 4, valibot 1, ArkType 2, Effect Schema and others. Typed here by shape, so no package of
 * theirs is a dependency.
 */
export interface StandardSchema<Output = unknown> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => SchemaResult<Output> | Promise<SchemaResult<Output>>;
    readonly types?: { readonly input: unknown; readonly output: Output } | undefined;
  };
}

/** The type a schema takes: what a publisher writes. */
export type SchemaInput<S extends StandardSchema> = NonNullable<S['~standard']['types']>['input'];

/** The type a schema gives: its output, defaults and transforms applied. */
export type SchemaOutput<S extends StandardSchema> = NonNullable<S['~standard']['types']>['output'];

/**
 * A definition `D` whose `validate` is the schema `S`: what the `define*` functions take to
 * infer the payload type from the schema alone. Some schemas are also functions (ArkType's
 * return the payload or their errors), and inferring from `PayloadValidator` would then add
 * the errors' type to the payload's.
 */
export type WithSchema<D, S extends StandardSchema> = Omit<D, 'validate'> & {
  readonly validate: S;
};

/**
 * Checks a parsed payload and returns it typed: a schema (`validate: OrderPlacedSchema`), or a
 * function that throws when the payload is invalid and returns the payload the handler gets.
 * A function's `undefined` dead-letters the message, so it is not part of the payload's type.
 */
export type PayloadValidator<P> =
  | StandardSchema<P>
  | ((payload: unknown, message: MessageInfo) => P | undefined | Promise<P | undefined>);

/** The outcome of a check: the payload the handler gets, or why the message is refused. */
export type ValidationOutcome =
  | { readonly ok: true; readonly payload: unknown }
  | { readonly ok: false; readonly problem: unknown };

/** Whether `value` is a Standard Schema (a schema object, not a validating function). */
export function isStandardSchema(value: unknown): value is StandardSchema {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  const props = (value as { '~standard'?: unknown })['~standard'];
  return (
    typeof props === 'object' &&
    props !== null &&
    typeof (props as { validate?: unknown }).validate === 'function'
  );
}

/** Whether `value` can be a consumer's `validate`: a function or a Standard Schema. */
export function isPayloadValidator(value: unknown): boolean {
  return typeof value === 'function' || isStandardSchema(value);
}

/** What a `validate` option must be, for the error naming one that is not. */
export const PAYLOAD_VALIDATOR_RULE =
  'must be a function or a Standard Schema (a zod, valibot or ArkType schema) when given';

/** Runs the validator; never throws (a throwing validator is a refused payload). */
export async function checkPayload(
  validator: PayloadValidator<unknown>,
  payload: unknown,
  message: MessageInfo,
): Promise<ValidationOutcome> {
  try {
    // Some schemas are also functions (ArkType's, which return their errors rather than
    // throw): the schema interface wins.
    if (isStandardSchema(validator)) return await schemaCheck(validator, payload);
    const checked: unknown = await validator(payload, message);
    const problem = returnedProblem(payload, checked);
    return problem === undefined ? { ok: true, payload: checked } : { ok: false, problem };
  } catch (error) {
    return { ok: false, problem: error };
  }
}

async function schemaCheck(schema: StandardSchema, payload: unknown): Promise<ValidationOutcome> {
  const props = schema['~standard'];
  const result = await props.validate(payload);
  if (result.issues === undefined) return { ok: true, payload: result.value };
  return { ok: false, problem: new PayloadSchemaError(props.vendor, result.issues) };
}

/**
 * What is wrong with what a validating function returned in place of `payload`, if it cannot
 * be the payload: `undefined` (a validator without `return`; no parsed payload is undefined),
 * or a boolean for a payload that was not one (a type guard's or `safeParse(...).success`'s
 * answer). Either way the handler would get it as the message.
 */
function returnedProblem(payload: unknown, checked: unknown): string | undefined {
  if (checked === undefined) {
    return '`validate` returned undefined: it must return the payload it checked (a validator without `return`?), which the handler gets';
  }
  if (typeof checked === 'boolean' && typeof payload !== 'boolean') {
    return `\`validate\` returned ${checked} for a payload that is not a boolean: it must return the payload it checked (and throw when it is invalid), which the handler gets`;
  }
  return undefined;
}
