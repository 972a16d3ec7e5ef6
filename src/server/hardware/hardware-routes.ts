/** /api/v1/hardware: the hardware store. */
import { Type } from '@sinclair/typebox';
import { GantryError } from '../../core/errors.ts';
import { Strict } from '../../protocol/common.ts';
import {
  AddHardwareRequest,
  HardwareItemDetail,
  HardwareItemSchema,
  HardwareList,
  HardwareListQuery,
  ImportResult,
  MoveHardwareRequest,
} from '../../protocol/hardware.ts';
import { type App, principalOf, responses } from '../http/route-kit.ts';
import type { HardwareService } from './hardware-service.ts';

const RefParams = Strict({
  ref: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }),
});

export function registerHardwareRoutes(
  app: App,
  hardware: HardwareService,
  options: { csvLimit: number },
): void {
  app.addContentTypeParser(
    'text/csv',
    { parseAs: 'string', bodyLimit: options.csvLimit },
    (_request, body, done) => done(null, body),
  );

  app.get(
    '/api/v1/hardware',
    {
      config: { permission: 'hardware:read' },
      schema: {
        tags: ['hardware'],
        summary: 'List hardware items',
        querystring: HardwareListQuery,
        response: responses(HardwareList),
      },
    },
    async (request) => ({ items: await hardware.list(request.query) }),
  );

  app.get(
    '/api/v1/hardware/:ref',
    {
      config: { permission: 'hardware:read' },
      schema: {
        tags: ['hardware'],
        summary: 'Show an item (by id or asset tag) with its history of moves',
        params: RefParams,
        response: responses(HardwareItemDetail),
      },
    },
    async (request) => hardware.show(request.params.ref),
  );

  app.post(
    '/api/v1/hardware',
    {
      config: { permission: 'hardware:write' },
      schema: {
        tags: ['hardware'],
        summary: 'Add an item to the store',
        body: AddHardwareRequest,
        response: responses(HardwareItemSchema, 201),
      },
    },
    async (request, reply) => reply.status(201).send(await hardware.add(principalOf(request), request.body)),
  );

  app.post(
    '/api/v1/hardware/import',
    {
      config: { permission: 'hardware:write' },
      schema: {
        tags: ['hardware'],
        summary:
          'Import items from CSV (text/csv; header asset_tag,model,vendor,serial,firmware_version,location); all or nothing',
        response: responses(ImportResult, 201),
      },
    },
    async (request, reply) => {
      if (typeof request.body !== 'string')
        throw new GantryError('UNSUPPORTED_MEDIA_TYPE', 'Send the CSV with Content-Type: text/csv.');
      const items = await hardware.importCsv(principalOf(request), request.body);
      return reply.status(201).send({ imported: items.length, items });
    },
  );

  app.post(
    '/api/v1/hardware/:ref/moves',
    {
      config: { permission: 'hardware:write' },
      schema: {
        tags: ['hardware'],
        summary: 'Move an item: reserve, deploy to a target or site, return, put back in store, retire',
        params: RefParams,
        body: MoveHardwareRequest,
        response: responses(HardwareItemDetail, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await hardware.move(principalOf(request), request.params.ref, request.body)),
  );
}
