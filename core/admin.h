/*
 * admin.h - the admin listener's routes, answered in C so that they
 * work whatever the Lua side is doing: /healthz, /readyz, /metrics,
 * GET /admin/plugins, POST /admin/reload.
 */
#ifndef AB_ADMIN_H
#define AB_ADMIN_H

struct ab_server;
struct ab_request;

/* Answers `req` (whose decoded path is `path`) on the admin server;
 * the request is freed once answered.  Called by the server. */
void ab_admin_handle(struct ab_server *server, struct ab_request *req,
                     const char *path);

#endif
