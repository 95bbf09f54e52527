import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../core/errors.js';

/** The error envelope every API error has: the OpenAPI component `Error`. */
export const ErrorSchema = z
  .object({
    error: z.object({
      code: z
        .enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]])
        .describe('One code of the catalogue (docs/errors.md); the HTTP status follows from it'),
      message: z.string().describe('One line for people: what is wrong and what to do'),
    }),
  })
  .meta({ id: 'Error' });
export type ErrorSchema = z.infer<typeof ErrorSchema>;

export type ErrorBody = z.infer<typeof ErrorSchema>;
