/*
 * test_core.c - unit tests of the pure parts of core/: CORS decisions,
 * settings (flags and the config file), crypto and base64url.
 *
 * No framework: CHECK() records a failure and goes on; the last line is
 * "N passed, N failed" and the exit status is non-zero on any failure.
 */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "cors.h"
#include "crypto.h"

static int passed, failed;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (cond) {                                                            \
            passed++;                                                          \
        } else {                                                               \
            failed++;                                                          \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
        }                                                                      \
    } while (0)

static const char *
header(struct evkeyvalq *h, const char *name)
{
    return evhttp_find_header(h, name);
}

static void
test_cors_allow_list(void)
{
    char *origins[] = {"https://authkit.picaos.com", "https://app.example",
                       NULL};
    char *extra[] = {"x-tenant", NULL};
    struct ab_cors cors;

    ab_cors_init(&cors, origins, extra);
    CHECK(ab_cors_origin_allowed(&cors, "https://authkit.picaos.com"));
    CHECK(ab_cors_origin_allowed(&cors, "https://APP.example"));
    CHECK(!ab_cors_origin_allowed(&cors, "https://evil.example"));
    CHECK(!ab_cors_origin_allowed(&cors, "null"));
    CHECK(!ab_cors_origin_allowed(&cors, NULL));
    CHECK(ab_cors_header_allowed(&cors, "X-User-Id"));
    CHECK(ab_cors_header_allowed(&cors, "x-tenant"));
    CHECK(!ab_cors_header_allowed(&cors, "x-other"));
}

static void
test_cors_preflight(void)
{
    char *origins[] = {"https://authkit.picaos.com", NULL};
    struct ab_cors cors;
    struct evkeyvalq out;

    ab_cors_init(&cors, origins, NULL);
    TAILQ_INIT(&out);
    CHECK(ab_cors_preflight(&cors, "https://authkit.picaos.com",
                            " X-User-Id ,x-bad,Content-Type", 1, &out) == 204);
    CHECK(strcmp(header(&out, "Access-Control-Allow-Headers"),
                 "x-user-id, content-type") == 0);
    CHECK(strcmp(header(&out, "Access-Control-Allow-Private-Network"),
                 "true") == 0);
    CHECK(strcmp(header(&out, "Access-Control-Allow-Credentials"), "true") ==
          0);
    evhttp_clear_headers(&out);

    CHECK(ab_cors_preflight(&cors, "https://evil.example", "x-user-id", 1,
                            &out) == 403);
    CHECK(header(&out, "Access-Control-Allow-Origin") == NULL);
    CHECK(header(&out, "Access-Control-Allow-Private-Network") == NULL);
    CHECK(header(&out, "Vary") != NULL);
    evhttp_clear_headers(&out);
}

static void
test_cors_any_origin(void)
{
    char *origins[] = {"*", NULL};
    struct ab_cors cors;
    struct evkeyvalq out;

    ab_cors_init(&cors, origins, NULL);
    TAILQ_INIT(&out);
    ab_cors_response(&cors, "https://anything.example", &out);
    CHECK(strcmp(header(&out, "Access-Control-Allow-Origin"), "*") == 0);
    CHECK(header(&out, "Access-Control-Allow-Credentials") == NULL);
    evhttp_clear_headers(&out);
}

static int
parse(int argc, char **argv, struct ab_config *cfg, enum ab_command *cmd,
      char *err)
{
    return ab_cli_parse(argc, argv, cmd, cfg, err, 256);
}

static void
test_flags(void)
{
    struct ab_config cfg;
    enum ab_command cmd;
    char err[256];
    char *ok[] = {"ab",    "--listen",   "127.0.0.1:0",       "--workers=1",
                  "--dev", "--pica-url", "http://127.0.0.1:9"};
    char *bad_num[] = {"ab", "--workers", "many"};
    char *bad_flag[] = {"ab", "sandbox", "--plugins", "x"};
    char *bad_url[] = {"ab", "--pica-url", "ftp://x"};

    CHECK(parse(7, ok, &cfg, &cmd, err) == 0);
    CHECK(cmd == AB_CMD_SERVE && cfg.dev == 1 && cfg.workers == 1);
    CHECK(strcmp(cfg.listen, "127.0.0.1:0") == 0);
    ab_config_free(&cfg);
    CHECK(parse(3, bad_num, &cfg, &cmd, err) == -1);
    CHECK(strstr(err, "workers must be a whole number") != NULL);
    ab_config_free(&cfg);
    CHECK(parse(4, bad_flag, &cfg, &cmd, err) == -1);
    CHECK(strstr(err, "unknown flag '--plugins'") != NULL);
    ab_config_free(&cfg);
    CHECK(parse(3, bad_url, &cfg, &cmd, err) == -1);
    ab_config_free(&cfg);
}

/* Writes `text` to a temporary config file; returns its path. */
static char *
config_file(const char *text)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof(path), "/tmp/ab-config-XXXXXX");
    fd = mkstemp(path);
    if (write(fd, text, strlen(text)) < 0) {
        path[0] = '\0';
    }
    close(fd);
    return path;
}

static void
test_config_file(void)
{
    struct ab_config cfg;
    char err[256];
    char *path = config_file(
        "return {cors_origins = {'https://a.example', 'https://b.example'},"
        " max_body_bytes = 2048, dev = true}");

    ab_config_defaults(&cfg);
    CHECK(ab_config_load_file(&cfg, path, err, sizeof(err)) == 0);
    CHECK(strcmp(cfg.cors_origins[1], "https://b.example") == 0);
    CHECK(cfg.cors_origins[2] == NULL);
    CHECK(cfg.max_body_bytes == 2048 && cfg.dev == 1);
    unlink(path);

    path = config_file("return {max_body_byte = 1}");
    CHECK(ab_config_load_file(&cfg, path, err, sizeof(err)) == -1);
    CHECK(strstr(err, "unknown setting 'max_body_byte'") != NULL);
    unlink(path);

    path = config_file("return {dev = 'yes please'}");
    CHECK(ab_config_load_file(&cfg, path, err, sizeof(err)) == -1);
    unlink(path);

    path = config_file("return {max_body_bytes = 5}");
    CHECK(ab_config_load_file(&cfg, path, err, sizeof(err)) == -1);
    CHECK(strstr(err, "between") != NULL);
    unlink(path);
    ab_config_free(&cfg);
}

static void
test_crypto(void)
{
    /* RFC 4231, test case 2. */
    unsigned char mac[AB_SHA256_LEN], buf[64];
    char enc[64], hex[65];
    size_t len;

    CHECK(ab_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac) ==
          0);
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    }
    CHECK(strcmp(hex, "5bdcc146bf60754e6a042426089575c75a003f089d273983"
                      "9dec58b964ec3843") == 0);
    CHECK(ab_base64url_encode((const unsigned char *)"\xfb\xff", 2, enc) == 3);
    CHECK(strcmp(enc, "-_8") == 0);
    CHECK(ab_base64url_decode("-_8", 3, buf, &len) == 0 && len == 2 &&
          buf[0] == 0xfb && buf[1] == 0xff);
    CHECK(ab_base64url_decode("aGk=", 4, buf, &len) == 0 && len == 2);
    CHECK(ab_base64url_decode("a", 1, buf, &len) == -1);
    CHECK(ab_base64url_decode("a+b/", 4, buf, &len) == -1);
    CHECK(ab_ct_equal("abc", 3, "abc", 3));
    CHECK(!ab_ct_equal("abc", 3, "abd", 3));
    CHECK(!ab_ct_equal("abc", 3, "ab", 2));
}

int
main(void)
{
    test_cors_allow_list();
    test_cors_preflight();
    test_cors_any_origin();
    test_flags();
    test_config_file();
    test_crypto();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
