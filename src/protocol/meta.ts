import { Type } from '@sinclair/typebox';
import { Strict } from './common.ts';

export const API_VERSION = 'v1';

export const VersionResponse = Strict({
  name: Type.Literal('gantry'),
  version: Type.String(),
  apiVersion: Type.String(),
  database: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')]),
});

export const HealthResponse = Strict({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
  checks: Type.Record(Type.String(), Type.String()),
});
