/** /api/v1/auth/* and /api/v1/whoami */
import { Type } from '@sinclair/typebox';
import { permissionsOf } from '../../core/roles.ts';
import { CreatedToken, PasswordTokenRequest } from '../../protocol/tokens.ts';
import { LoginRequest, LoginResponse, WhoamiResponse } from '../../protocol/users.ts';
import { SESSION_COOKIE } from '../http/authenticate.ts';
import { type App, principalOf, responses } from '../http/route-kit.ts';
import { toUserView } from '../users/user-routes.ts';
import { type AuthService, SESSION_TTL_MS } from './auth-service.ts';

export function registerAuthRoutes(app: App, auth: AuthService, options: { secureCookies: boolean }): void {
  app.post(
    '/api/v1/auth/login',
    {
      config: { permission: 'public' },
      schema: {
        tags: ['auth'],
        summary: 'Log in to the dashboard (sets the session cookie)',
        body: LoginRequest,
        response: responses(LoginResponse),
      },
    },
    async (request, reply) => {
      const started = await auth.login(request.body.username, request.body.password, request.ip);
      reply.setCookie(SESSION_COOKIE, started.secret, {
        httpOnly: true,
        sameSite: 'strict',
        secure: options.secureCookies,
        path: '/',
        maxAge: Math.floor(SESSION_TTL_MS / 1000),
      });
      return {
        user: toUserView(started.user),
        csrfToken: started.session.csrfToken,
        expiresAt: started.session.expiresAt,
      };
    },
  );

  app.post(
    '/api/v1/auth/token',
    {
      config: { permission: 'public' },
      schema: {
        tags: ['auth'],
        summary: 'Trade a user name and password for a new API token (what `gantry login` does)',
        body: PasswordTokenRequest,
        response: responses(CreatedToken, 201),
      },
    },
    async (request, reply) => reply.status(201).send(await auth.loginForToken(request.body, request.ip)),
  );

  app.post(
    '/api/v1/auth/logout',
    {
      config: { permission: 'authenticated' },
      schema: { tags: ['auth'], summary: 'End the dashboard session', response: responses(Type.Null(), 204) },
    },
    async (request, reply) => {
      await auth.logout(principalOf(request));
      reply.clearCookie(SESSION_COOKIE, { path: '/' });
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/api/v1/whoami',
    {
      config: { permission: 'authenticated' },
      schema: {
        tags: ['auth'],
        summary: 'Who the caller is and what they may do',
        response: responses(WhoamiResponse),
      },
    },
    async (request) => {
      const principal = principalOf(request);
      return {
        user: toUserView(principal.user),
        via: principal.via,
        tokenId: principal.tokenId,
        permissions: [...permissionsOf(principal.user.role)],
        csrfToken: principal.session?.csrfToken ?? null,
      };
    },
  );
}
