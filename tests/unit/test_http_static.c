/*
 * Unit tests for gatewayd/http_static.c, #included to reach its statics.
 *
 * The open tests build a real tree under /tmp: files, directories with
 * and without an index, symlinks that stay inside and ones that leave, a
 * FIFO, a socket, a device when the container lets us make one, and
 * files that a user other than root may not read (checked in a child
 * that drops to nobody, since root reads everything).
 */
#include "check.h"

#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "../../gatewayd/http_static.c"

static char out[HTTP_STATIC_PATH_MAX];
static const char *why;
static struct http_req req;

/* http_static_target of a NUL-terminated path under prefix. */
static int
target(const char *path, const char *prefix)
{
	return http_static_target(path, strlen(path), prefix, strlen(prefix),
	    out, sizeof(out), &why);
}

/* Parse a NUL-terminated request head into req. */
static int
parse(const char *s)
{
	return http_req_parse(&req, s, strlen(s), 64);
}

static void
test_target_prefix_root(void)
{
	CHECK_EQ_INT(target("/", "/"), 0);
	CHECK_EQ_STR(out, "");
	CHECK(why == NULL);
	CHECK_EQ_INT(target("/a.css", "/"), 0);
	CHECK_EQ_STR(out, "a.css");
	CHECK_EQ_INT(target("/a/b/c.js", "/"), 0);
	CHECK_EQ_STR(out, "a/b/c.js");
	CHECK_EQ_INT(target("/a/b/", "/"), 0);
	CHECK_EQ_STR(out, "a/b/");
	/* an empty prefix is "/" */
	CHECK_EQ_INT(target("/a", ""), 0);
	CHECK_EQ_STR(out, "a");
	CHECK_EQ_INT(target("/", ""), 0);
	CHECK_EQ_STR(out, "");
}

static void
test_target_prefix_dir(void)
{
	static const char *const prefixes[] = { "/static", "/static/" };
	size_t i;

	for (i = 0; i < 2; i++) {
		CHECK_EQ_INT(target("/static/", prefixes[i]), 0);
		CHECK_EQ_STR(out, "");
		CHECK_EQ_INT(target("/static/app.js", prefixes[i]), 0);
		CHECK_EQ_STR(out, "app.js");
		CHECK_EQ_INT(target("/static/css/", prefixes[i]), 0);
		CHECK_EQ_STR(out, "css/");
		CHECK_EQ_INT(target("/static", prefixes[i]), 301);
		CHECK_EQ_STR(out, "");
		CHECK(why != NULL);
		CHECK_EQ_INT(target("/staticx", prefixes[i]), 404);
		CHECK_EQ_INT(target("/stati", prefixes[i]), 404);
		CHECK_EQ_INT(target("/", prefixes[i]), 404);
		CHECK_EQ_INT(target("/other/static/a", prefixes[i]), 404);
		CHECK_EQ_INT(target("/Static/a", prefixes[i]), 404);
		/* the prefix is matched as sent, before decoding */
		CHECK_EQ_INT(target("/st%61tic/a", prefixes[i]), 404);
		CHECK_EQ_INT(target("/static%2fa", prefixes[i]), 404);
		CHECK_EQ_INT(target("//static/a", prefixes[i]), 404);
		CHECK_EQ_STR(why, "not under the prefix");
	}
	CHECK_EQ_INT(target("/a/b/c/d", "/a/b"), 0);
	CHECK_EQ_STR(out, "c/d");
	CHECK_EQ_INT(target("/a/b", "/a/b/"), 301);
	CHECK_EQ_INT(target("/a/bc", "/a/b"), 404);
	/* unsafe but outside the prefix: not this prefix's to judge */
	CHECK_EQ_INT(target("/x/../etc", "/static"), 404);
}

static void
test_target_decode(void)
{
	CHECK_EQ_INT(target("/%41%62c", "/"), 0);
	CHECK_EQ_STR(out, "Abc");
	CHECK_EQ_INT(target("/caf%c3%A9.txt", "/"), 0);
	CHECK_EQ_STR(out, "caf\xc3\xa9.txt");
	CHECK_EQ_INT(target("/a%20b", "/"), 0);
	CHECK_EQ_STR(out, "a b");
	CHECK_EQ_INT(target("/100%25", "/"), 0);
	CHECK_EQ_STR(out, "100%");
	CHECK_EQ_INT(target("/%7e%7E", "/"), 0);
	CHECK_EQ_STR(out, "~~");
	CHECK_EQ_INT(target("/a;b=c,d@e:f", "/"), 0);
	CHECK_EQ_STR(out, "a;b=c,d@e:f");
	/* names with dots among other bytes are names */
	CHECK_EQ_INT(target("/..a/a../.hidden/a.b.c", "/"), 0);
	CHECK_EQ_STR(out, "..a/a../.hidden/a.b.c");
	CHECK_EQ_INT(target("/.well-known/x", "/"), 0);
	CHECK_EQ_STR(out, ".well-known/x");
	CHECK_EQ_INT(target("/%2e%2ea", "/"), 0);
	CHECK_EQ_STR(out, "..a");
	/* decoded only once */
	CHECK_EQ_INT(target("/%2541", "/"), 0);
	CHECK_EQ_STR(out, "%41");
}

static void
test_target_bad_escapes(void)
{
	static const char *const bad[] = {
		"/%", "/a%", "/%2", "/a%2", "/%zz", "/%2g", "/%g2", "/%%2e",
		"/%-1", "/% 1", "/%+1", "/%x41", "/a/%/b", "/%2/", "/%%",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ_INT(target(bad[i], "/"), 400);
		CHECK_EQ_STR(out, "");
	}
	CHECK_EQ_INT(target("/%", "/"), 400);
	CHECK_EQ_STR(why, "a bad percent escape");
}

/* Every spelling of a way out, or of a name no file system should see. */
static void
test_target_traversal(void)
{
	static const char *const bad[] = {
		"/../etc/passwd",
		"/..",
		"/../",
		"/.",
		"/./",
		"/a/./b",
		"/a/../b",
		"/a/../../b",
		"/a/b/../../../etc/passwd",
		"/%2e%2e/etc/passwd",
		"/%2E%2E/etc/passwd",
		"/%2e%2E/",
		"/.%2e/",
		"/%2e./",
		"/.%2E",
		"/%2e",
		"/%2e/a",
		"/a/%2e%2e",
		"/...",
		"/..../x",
		"/a/.../b",
		"/%2e%2e%2e",
		"/.%2e.",
		"/%2E%2E%2Fetc",
		"/..%2fetc",
		"/..%2Fetc",
		"/%2e%2e%2fetc%2fpasswd",
		"/a%2f..%2f..%2fetc",
		"/a%2Fb",
		"/%2f",
		"/%2fetc/passwd",
		"/..\\",
		"/..\\etc",
		"/a\\..\\..\\etc",
		"/%5c..",
		"/%5C..%5Cetc",
		"/..%5c..%5cetc",
		"/a%5cb",
		"/a%00b",
		"/%00",
		"/a.txt%00.png",
		"/%2e%2e%00",
		"/a%0ab",
		"/a%0D%0Ab",
		"/a%09b",
		"/a%1fb",
		"/a%7fb",
		"/a b",
		"/a\tb",
		"/a\x7f",
		"/a\x01",
		"/\xc3\xa9",
		"/a\rb",
		"/static/../../etc/passwd",
		"..",
		"../etc/passwd",
		"%2e%2e/etc",
		"http://example.com/etc/passwd",
		"example.com:80",
		"*",
		"",
		"\\..\\etc",
	};
	size_t i;
	int st;

	CHECK(sizeof(bad) / sizeof(bad[0]) >= 30);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		st = target(bad[i], "/");
		if (st != 400)
			fprintf(stderr, "traversal \"%s\": %d \"%s\"\n", bad[i],
			    st, out);
		CHECK_EQ_INT(st, 400);
		CHECK_EQ_STR(out, "");
		CHECK(why != NULL);
		/* and under a prefix too */
		if (bad[i][0] == '/' && strncmp(bad[i], "/static/", 8) != 0) {
			char path[128];

			snprintf(path, sizeof(path), "/static%s", bad[i]);
			CHECK_EQ_INT(target(path, "/static"), 400);
		}
	}
	CHECK_EQ_INT(target("/a%2fb", "/"), 400);
	CHECK_EQ_STR(why, "an encoded slash");
	CHECK_EQ_INT(target("/a%5cb", "/"), 400);
	CHECK_EQ_STR(why, "a backslash");
	CHECK_EQ_INT(target("/a\\b", "/"), 400);
	CHECK_EQ_STR(why, "a backslash");
	CHECK_EQ_INT(target("/a%00b", "/"), 400);
	CHECK_EQ_STR(why, "a NUL byte");
	CHECK_EQ_INT(target("/a%0ab", "/"), 400);
	CHECK_EQ_STR(why, "a control character");
	CHECK_EQ_INT(target("/a/../b", "/"), 400);
	CHECK_EQ_STR(why, "a dot segment");
	CHECK_EQ_INT(target("/a b", "/"), 400);
	CHECK_EQ_STR(why, "a byte that must be percent-encoded");
	CHECK_EQ_INT(target("*", "/"), 400);
	CHECK_EQ_STR(why, "not an origin-form path");
}

/* Spellings that look like a way out but are harmless names. */
static void
test_target_harmless(void)
{
	/* double encoding decodes once, to a six-byte literal name */
	CHECK_EQ_INT(target("/%252e%252e/", "/"), 0);
	CHECK_EQ_STR(out, "%2e%2e/");
	CHECK_EQ_INT(target("/%252e%252e%252fetc", "/"), 0);
	CHECK_EQ_STR(out, "%2e%2e%2fetc");
	CHECK_EQ_INT(target("/%255c..%255c", "/"), 0);
	CHECK_EQ_STR(out, "%5c..%5c");
	/* empty segments collapse: still relative, still inside */
	CHECK_EQ_INT(target("//etc/passwd", "/"), 0);
	CHECK_EQ_STR(out, "etc/passwd");
	CHECK_EQ_INT(target("///", "/"), 0);
	CHECK_EQ_STR(out, "");
	CHECK_EQ_INT(target("/a//b///c//", "/"), 0);
	CHECK_EQ_STR(out, "a/b/c/");
	CHECK_EQ_INT(target("/static//etc", "/static"), 0);
	CHECK_EQ_STR(out, "etc");
	CHECK_EQ_INT(target("/static//", "/static"), 0);
	CHECK_EQ_STR(out, "");
	CHECK_EQ_INT(target("/...a", "/"), 0);
	CHECK_EQ_STR(out, "...a");
	CHECK_EQ_INT(target("/a...", "/"), 0);
	CHECK_EQ_STR(out, "a...");
}

static void
test_target_too_long(void)
{
	char path[64], small[8];
	size_t i;

	/* "abcdef" needs 7 bytes */
	for (i = 0; i <= 9; i++) {
		memset(small, 'x', sizeof(small));
		CHECK_EQ_INT(http_static_target("/abcdef", 7, "/", 1,
		    i == 0 ? NULL : small, i > 8 ? 8 : i, &why),
		    i >= 7 ? 0 : 414);
		if (i >= 7)
			CHECK_EQ_STR(small, "abcdef");
		else if (i > 0) {
			CHECK_EQ_STR(small, "");
			CHECK_EQ_STR(why, "the path is too long");
		}
	}
	/* the trailing slash counts; an encoded byte counts once */
	CHECK_EQ_INT(http_static_target("/abcde/", 7, "/", 1, small, 6, &why),
	    414);
	CHECK_EQ_INT(http_static_target("/abcde/", 7, "/", 1, small, 7, &why),
	    0);
	CHECK_EQ_STR(small, "abcde/");
	CHECK_EQ_INT(http_static_target("/%61%62%63%64%65%66%67", 22, "/", 1,
	    small, 8, &why), 0);
	CHECK_EQ_STR(small, "abcdefg");
	/* a 400 anywhere outranks the 414 */
	CHECK_EQ_INT(http_static_target("/abcdefghij/..", 14, "/", 1, small,
	    8, &why), 400);
	CHECK_EQ_STR(small, "");
	CHECK_EQ_INT(http_static_target("/abcdefghij%zz", 14, "/", 1, small,
	    8, &why), 400);
	/* collapsed slashes take no room */
	snprintf(path, sizeof(path), "%s", "////////////////a//////b");
	CHECK_EQ_INT(http_static_target(path, strlen(path), "/", 1, small, 4,
	    &why), 0);
	CHECK_EQ_STR(small, "a/b");
	/* why may be NULL */
	CHECK_EQ_INT(http_static_target("/..", 3, "/", 1, small, 8, NULL),
	    400);
	CHECK_EQ_INT(http_static_target("/a", 2, "/", 1, small, 8, NULL), 0);
}

static void
test_prefix_check(void)
{
	static const char *const good[] = {
		"/", "/static", "/static/", "/a/b", "/a/b/", "/a.b", "/..a",
		"/~user", "/a-b_c",
	};
	static const char *const bad[] = {
		"", "static", "//", "/a//b", "/./", "/..", "/a/../b",
		"/a/.", "/%2e", "/a?b", "/a#b", "/a b", "/a\\b", "/\xc3\xa9",
		"/a\tb", "/...", "//a",
	};
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		why = NULL;
		CHECK_EQ_INT(http_static_prefix_check(good[i], &why), 0);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		CHECK_EQ_INT(http_static_prefix_check(bad[i], &why), -1);
		CHECK(why != NULL);
	}
}

static void
test_index_check(void)
{
	CHECK_EQ_INT(http_static_index_check("index.html", &why), 0);
	CHECK_EQ_INT(http_static_index_check("default.htm", &why), 0);
	CHECK_EQ_INT(http_static_index_check(".index", &why), 0);
	CHECK_EQ_INT(http_static_index_check("", &why), -1);
	CHECK_EQ_INT(http_static_index_check(".", &why), -1);
	CHECK_EQ_INT(http_static_index_check("..", &why), -1);
	CHECK_EQ_INT(http_static_index_check("a/index.html", &why), -1);
	CHECK_EQ_INT(http_static_index_check("../index.html", &why), -1);
	CHECK_EQ_INT(http_static_index_check("a\\b", &why), -1);
	CHECK_EQ_INT(http_static_index_check("a b", &why), -1);
	CHECK_EQ_INT(http_static_index_check("a\nb", &why), -1);
}

static void
test_location(void)
{
	char buf[128];

	CHECK_EQ_INT(http_static_location(buf, sizeof(buf), "/static", 7, "",
	    "", 0), 8);
	CHECK_EQ_STR(buf, "/static/");
	CHECK_EQ_INT(http_static_location(buf, sizeof(buf), "/static/", 8,
	    "css", "", 0), 12);
	CHECK_EQ_STR(buf, "/static/css/");
	CHECK(http_static_location(buf, sizeof(buf), "/", 1, "a/b", "x=1&y",
	    5) > 0);
	CHECK_EQ_STR(buf, "/a/b/?x=1&y");
	CHECK(http_static_location(buf, sizeof(buf), "/", 1, "a/b/", "", 0) > 0);
	CHECK_EQ_STR(buf, "/a/b/");
	/* what the target decoded is encoded again */
	CHECK(http_static_location(buf, sizeof(buf), "/", 1,
	    "a b/caf\xc3\xa9/100%/q?#\x01\"<>", "", 0) > 0);
	CHECK_EQ_STR(buf, "/a%20b/caf%C3%A9/100%25/q%3F%23%01%22%3C%3E/");
	CHECK(http_static_location(buf, sizeof(buf), "/", 1, "-._~!$&'()*+,;=:@",
	    "", 0) > 0);
	CHECK_EQ_STR(buf, "/-._~!$&'()*+,;=:@/");
	/* never "//host": always one slash, then a path */
	CHECK(http_static_location(buf, sizeof(buf), "/", 1, "evil.example",
	    "", 0) > 0);
	CHECK_EQ_STR(buf, "/evil.example/");
	CHECK(http_static_location(buf, sizeof(buf), "", 0, "//evil.example",
	    "", 0) > 0);
	CHECK_EQ_STR(buf, "/evil.example/");
	/* a query with a byte a header must not hold */
	CHECK_EQ_INT(http_static_location(buf, sizeof(buf), "/", 1, "a",
	    "x\r\nSet-Cookie: a", 16), 0);
	CHECK_EQ_INT(http_static_location(buf, sizeof(buf), "/", 1, "a",
	    "x y", 3), 0);
	/* too small, at every size */
	CHECK_EQ_INT(http_static_location(buf, 9, "/static", 7, "", "", 0), 8);
	CHECK_EQ_INT(http_static_location(buf, 8, "/static", 7, "", "", 0), 0);
	CHECK_EQ_INT(http_static_location(buf, 8, "/", 1, "a\x01", "q", 1),
	    0);
	CHECK_EQ_INT(http_static_location(buf, 9, "/", 1, "a\x01", "q", 1),
	    8);
	CHECK_EQ_STR(buf, "/a%01/?q");
}

static void
test_mime(void)
{
	static const struct {
		const char *name, *type;
	} t[] = {
		{ "index.html", "text/html; charset=utf-8" },
		{ "a/b/INDEX.HTM", "text/html; charset=utf-8" },
		{ "style.css", "text/css; charset=utf-8" },
		{ "app.js", "text/javascript; charset=utf-8" },
		{ "mod.MJS", "text/javascript; charset=utf-8" },
		{ "data.json", "application/json" },
		{ "app.js.map", "application/json" },
		{ "logo.svg", "image/svg+xml" },
		{ "a.png", "image/png" },
		{ "a.jpg", "image/jpeg" },
		{ "a.JPEG", "image/jpeg" },
		{ "a.gif", "image/gif" },
		{ "a.webp", "image/webp" },
		{ "favicon.ico", "image/vnd.microsoft.icon" },
		{ "notes.txt", "text/plain; charset=utf-8" },
		{ "m.wasm", "application/wasm" },
		{ "feed.xml", "application/xml" },
		{ "doc.pdf", "application/pdf" },
		{ "f.woff", "font/woff" },
		{ "f.woff2", "font/woff2" },
		{ "archive.tar.gz", "application/octet-stream" },
		{ "README", "application/octet-stream" },
		{ ".html", "application/octet-stream" },
		{ "dir.html/file", "application/octet-stream" },
		{ "a.", "application/octet-stream" },
		{ "a.htmlx", "application/octet-stream" },
		{ "a.ht", "application/octet-stream" },
		{ "", "application/octet-stream" },
		{ "css/", "application/octet-stream" },
		{ "a/.b.css", "text/css; charset=utf-8" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		CHECK_EQ_STR(http_static_mime(t[i].name), t[i].type);
}

/* The tree the open tests serve: ROOT/www, with ROOT/outside.txt. */
static char root[64], www[96];
static int wwwfd = -1;
static bool have_device;

static void
put(const char *rel, const char *content, mode_t mode)
{
	int fd;

	fd = openat(wwwfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	CHECK(fd != -1);
	if (fd == -1)
		return;
	CHECK_EQ_INT(write(fd, content, strlen(content)),
	    (long long)strlen(content));
	CHECK_EQ_INT(fchmod(fd, mode), 0);
	close(fd);
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
tree_remove(void)
{
	if (wwwfd != -1)
		close(wwwfd);
	wwwfd = -1;
	if (root[0] != '\0')
		nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static bool
tree_make(void)
{
	char path[256];
	struct sockaddr_un sun;
	int fd, s;

	snprintf(root, sizeof(root), "/tmp/gatewayd-static.XXXXXX");
	if (mkdtemp(root) == NULL) {
		perror("mkdtemp");
		return false;
	}
	chmod(root, 0755);
	snprintf(www, sizeof(www), "%s/www", root);
	snprintf(path, sizeof(path), "%s/outside.txt", root);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd != -1 && write(fd, "secret\n", 7) == 7);
	close(fd);
	CHECK_EQ_INT(mkdir(www, 0755), 0);
	wwwfd = open(www, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (wwwfd == -1)
		return false;

	put("index.html", "<h1>home</h1>\n", 0644);
	put("a.txt", "hello\n", 0644);
	put("%2e%2e", "literal\n", 0644);
	put("a b.txt", "space\n", 0644);
	CHECK_EQ_INT(mkdirat(wwwfd, "sub", 0755), 0);
	put("sub/index.html", "<h1>sub</h1>\n", 0644);
	CHECK_EQ_INT(mkdirat(wwwfd, "sub/deeper", 0755), 0);
	put("sub/deeper/x.js", "x();\n", 0644);
	CHECK_EQ_INT(mkdirat(wwwfd, "empty", 0755), 0);
	CHECK_EQ_INT(mkdirat(wwwfd, "idxdir", 0755), 0);
	CHECK_EQ_INT(mkdirat(wwwfd, "idxdir/index.html", 0755), 0);
	CHECK_EQ_INT(mkdirat(wwwfd, "locked", 0700), 0);
	put("locked/x.txt", "locked\n", 0644);
	put("secret.txt", "no read bits\n", 0000);

	/* symlinks that stay inside */
	CHECK_EQ_INT(symlinkat("a.txt", wwwfd, "link_in"), 0);
	CHECK_EQ_INT(symlinkat("sub", wwwfd, "link_sub"), 0);
	CHECK_EQ_INT(symlinkat("../a.txt", wwwfd, "sub/link_up"), 0);
	CHECK_EQ_INT(symlinkat("../sub/../a.txt", wwwfd, "sub/link_updown"),
	    0);
	CHECK_EQ_INT(symlinkat("link_in", wwwfd, "link_link"), 0);
	/* and ones that leave */
	CHECK_EQ_INT(symlinkat("../outside.txt", wwwfd, "link_out"), 0);
	CHECK_EQ_INT(symlinkat("../../outside.txt", wwwfd, "sub/link_out"), 0);
	CHECK_EQ_INT(symlinkat("/etc/passwd", wwwfd, "link_abs"), 0);
	snprintf(path, sizeof(path), "%s/a.txt", www);
	CHECK_EQ_INT(symlinkat(path, wwwfd, "link_abs_in"), 0);
	CHECK_EQ_INT(symlinkat("..", wwwfd, "link_dir_out"), 0);
	CHECK_EQ_INT(symlinkat("/", wwwfd, "link_root"), 0);
	CHECK_EQ_INT(symlinkat("link_loop", wwwfd, "link_loop"), 0);
	CHECK_EQ_INT(symlinkat("missing", wwwfd, "link_dangling"), 0);
	CHECK_EQ_INT(symlinkat("/proc/self/root", wwwfd, "link_proc"), 0);

	/* what is not a regular file */
	CHECK_EQ_INT(mkfifoat(wwwfd, "fifo", 0644), 0);
	CHECK_EQ_INT(symlinkat("fifo", wwwfd, "link_fifo"), 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/sock", www);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(s != -1);
	CHECK_EQ_INT(bind(s, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(s);
	have_device = mknodat(wwwfd, "null", S_IFCHR | 0666,
	    makedev(1, 3)) == 0;
	if (!have_device)
		fprintf(stderr, "note: no device node (mknod: %s): "
		    "skipping that case\n", strerror(errno));
	return true;
}

static void
open_is(int want, const char *rel, const char *content, int line)
{
	struct stat st;
	char buf[64];
	ssize_t n;
	int fd = 12345, got;

	got = http_static_open(wwwfd, rel, "index.html", &fd, &st);
	if (got != want) {
		fprintf(stderr, "%s:%d: open \"%s\" (%s): %d, not %d\n",
		    __FILE__, line, rel, http_static_walk_only ? "walk" :
		    "openat2", got, want);
		check_failures_in_test++;
	}
	if (got != 0) {
		CHECK_EQ_INT(fd, -1);
		return;
	}
	CHECK(fd >= 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
	CHECK((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	CHECK(n >= 0);
	buf[n < 0 ? 0 : n] = '\0';
	CHECK_EQ_INT(st.st_size, n);
	if (content != NULL && strcmp(buf, content) != 0) {
		fprintf(stderr, "%s:%d: open \"%s\": read \"%s\"\n", __FILE__,
		    line, rel, buf);
		check_failures_in_test++;
	}
	close(fd);
}

#define OPEN_IS(want, rel, content) open_is(want, rel, content, __LINE__)

/* What both ways of opening agree on. */
static void
open_common(void)
{
	struct stat st;
	int fd;

	OPEN_IS(0, "a.txt", "hello\n");
	OPEN_IS(0, "", "<h1>home</h1>\n");
	OPEN_IS(0, "index.html", "<h1>home</h1>\n");
	OPEN_IS(0, "sub/", "<h1>sub</h1>\n");
	OPEN_IS(0, "sub/index.html", "<h1>sub</h1>\n");
	OPEN_IS(0, "sub/deeper/x.js", "x();\n");
	OPEN_IS(0, "%2e%2e", "literal\n");
	OPEN_IS(0, "a b.txt", "space\n");
	OPEN_IS(HTTP_STATIC_REDIRECT, "sub", NULL);
	OPEN_IS(HTTP_STATIC_REDIRECT, "sub/deeper", NULL);
	OPEN_IS(HTTP_STATIC_REDIRECT, "empty", NULL);
	OPEN_IS(404, "sub/deeper/", NULL);	/* no index */
	OPEN_IS(404, "empty/", NULL);
	OPEN_IS(404, "idxdir/", NULL);		/* its index is a directory */
	OPEN_IS(404, "missing.txt", NULL);
	OPEN_IS(404, "missing/", NULL);
	OPEN_IS(404, "missing/a.txt", NULL);
	OPEN_IS(404, "a.txt/", NULL);		/* ENOTDIR */
	OPEN_IS(404, "a.txt/x", NULL);
	OPEN_IS(404, "fifo", NULL);
	OPEN_IS(404, "sock", NULL);
	OPEN_IS(404, "null", NULL);		/* a device, or missing */
	OPEN_IS(404, "link_out", NULL);
	OPEN_IS(404, "sub/link_out", NULL);
	OPEN_IS(404, "link_abs", NULL);
	OPEN_IS(404, "link_dir_out/outside.txt", NULL);
	OPEN_IS(404, "link_dir_out/", NULL);
	OPEN_IS(404, "link_root/etc/passwd", NULL);
	OPEN_IS(404, "link_loop", NULL);
	OPEN_IS(404, "link_dangling", NULL);
	OPEN_IS(404, "link_proc/etc/passwd", NULL);
	OPEN_IS(404, "link_fifo", NULL);
	/* a name too long for any file system, and a path too */
	{
		char name[HTTP_STATIC_PATH_MAX + 16];

		memset(name, 'n', 300);
		name[300] = '\0';
		OPEN_IS(404, name, NULL);
		memset(name, 'n', sizeof(name) - 1);
		name[sizeof(name) - 1] = '\0';
		OPEN_IS(404, name, NULL);
		name[sizeof(name) - 2] = '/';
		OPEN_IS(404, name, NULL);
	}
	/* no index configured: a directory is 404 */
	CHECK_EQ_INT(http_static_open(wwwfd, "", NULL, &fd, &st), 404);
	CHECK_EQ_INT(http_static_open(wwwfd, "sub/", "", &fd, &st), 404);
	CHECK_EQ_INT(http_static_open(wwwfd, "sub/", "x.js", &fd, &st), 404);
	CHECK_EQ_INT(http_static_open(wwwfd, "sub/deeper/", "x.js", &fd, &st),
	    0);
	close(fd);
	/* rel that no target can produce stays inside all the same */
	OPEN_IS(404, "../outside.txt", NULL);
	OPEN_IS(404, "/etc/passwd", NULL);
	OPEN_IS(404, "sub/../../outside.txt", NULL);
}

static void
test_open_openat2(void)
{
	struct stat st;
	int fd;

	if (!tree_make()) {
		check_failures_in_test++;
		tree_remove();
		return;
	}
	http_static_walk_only = false;
	/* this kernel has openat2 */
	fd = http_static_openat2(wwwfd, "a.txt");
	CHECK(fd != -1);
	if (fd != -1)
		close(fd);
	open_common();
	CHECK(!http_static_walk_only);
	/* relative symlinks that stay inside are followed */
	OPEN_IS(0, "link_in", "hello\n");
	OPEN_IS(0, "link_link", "hello\n");
	OPEN_IS(0, "sub/link_up", "hello\n");
	OPEN_IS(0, "sub/link_updown", "hello\n");
	OPEN_IS(0, "link_sub/", "<h1>sub</h1>\n");
	OPEN_IS(0, "link_sub/deeper/x.js", "x();\n");
	OPEN_IS(HTTP_STATIC_REDIRECT, "link_sub", NULL);
	/* an absolute one never is, even to a file inside */
	OPEN_IS(404, "link_abs_in", NULL);
	/* a magic link from /proc: served from /proc/self, root would be
	 * the way out */
	{
		int procfd = open("/proc/self", O_RDONLY | O_DIRECTORY);

		if (procfd != -1) {
			CHECK_EQ_INT(http_static_open(procfd, "root/etc/passwd",
			    NULL, &fd, &st), 404);
			CHECK_EQ_INT(http_static_open(procfd, "cwd/", "x", &fd,
			    &st), 404);
			close(procfd);
		}
	}
	tree_remove();
}

static void
test_open_walk(void)
{
	if (!tree_make()) {
		check_failures_in_test++;
		tree_remove();
		return;
	}
	http_static_walk_only = true;
	open_common();
	/* every symlink is refused, even one that stays inside */
	OPEN_IS(404, "link_in", NULL);
	OPEN_IS(404, "link_link", NULL);
	OPEN_IS(404, "sub/link_up", NULL);
	OPEN_IS(404, "link_sub/", NULL);
	OPEN_IS(404, "link_sub/deeper/x.js", NULL);
	OPEN_IS(404, "link_sub", NULL);
	OPEN_IS(404, "link_abs_in", NULL);
	/* ".", ".." and empty components */
	OPEN_IS(404, "./a.txt", NULL);
	OPEN_IS(404, "sub/./index.html", NULL);
	OPEN_IS(0, "sub//deeper///x.js", "x();\n");
	http_static_walk_only = false;
	tree_remove();
}

/*
 * As nobody: a file without read bits, and a directory without search
 * permission, are 403 (root reads them all, so only a child that drops
 * to nobody can tell).  Out of descriptors is 503.
 */
static void
test_open_denied(void)
{
	struct stat st;
	pid_t pid;
	int status, fd, fails;

	if (!tree_make()) {
		check_failures_in_test++;
		tree_remove();
		return;
	}
	fflush(NULL);
	pid = fork();
	CHECK(pid != -1);
	if (pid == 0) {
		fails = 0;
		if (geteuid() == 0 && (setgroups(0, NULL) == -1 ||
		    setgid(65534) == -1 || setuid(65534) == -1))
			_exit(77);
		for (int walk = 0; walk < 2; walk++) {
			http_static_walk_only = walk;
			fails += http_static_open(wwwfd, "secret.txt", NULL,
			    &fd, &st) != 403;
			fails += fd != -1;
			fails += http_static_open(wwwfd, "locked/x.txt", NULL,
			    &fd, &st) != 403;
			fails += http_static_open(wwwfd, "a.txt", NULL,
			    &fd, &st) != 0;
			close(fd);
		}
		http_static_walk_only = false;
		/* out of descriptors */
		while (dup(wwwfd) != -1)
			;
		fails += errno != EMFILE;
		fails += http_static_open(wwwfd, "a.txt", NULL, &fd, &st) !=
		    503;
		fails += fd != -1;
		_exit(fails == 0 ? 0 : 1);
	}
	CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		fprintf(stderr, "note: could not drop to nobody: 403 not "
		    "tested\n");
	else
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	tree_remove();
}

static void
test_errno_status(void)
{
	CHECK_EQ_INT(http_static_errno_status(ENOENT), 404);
	CHECK_EQ_INT(http_static_errno_status(ENOTDIR), 404);
	CHECK_EQ_INT(http_static_errno_status(EXDEV), 404);
	CHECK_EQ_INT(http_static_errno_status(ELOOP), 404);
	CHECK_EQ_INT(http_static_errno_status(ENAMETOOLONG), 404);
	CHECK_EQ_INT(http_static_errno_status(ENXIO), 404);
	CHECK_EQ_INT(http_static_errno_status(EACCES), 403);
	CHECK_EQ_INT(http_static_errno_status(EPERM), 403);
	CHECK_EQ_INT(http_static_errno_status(EMFILE), 503);
	CHECK_EQ_INT(http_static_errno_status(ENFILE), 503);
	CHECK_EQ_INT(http_static_errno_status(EIO), 500);
	CHECK_EQ_INT(http_static_errno_status(ENOMEM), 500);
	CHECK_EQ_INT(http_static_errno_status(EINVAL), 500);
}

static void
test_etag(void)
{
	struct stat st, st2;
	char tag[HTTP_STATIC_ETAG_SIZE], tag2[HTTP_STATIC_ETAG_SIZE];

	memset(&st, 0, sizeof(st));
	st.st_ino = 0x1234;
	st.st_size = 5;
	st.st_mtim.tv_sec = 1;
	st.st_mtim.tv_nsec = 2;
	CHECK_EQ_INT(http_static_etag(&st, tag), 17);
	CHECK_EQ_STR(tag, "\"1234-5-3b9aca02\"");
	/* the largest fits */
	st.st_ino = (ino_t)-1;
	st.st_size = INT64_MAX;
	st.st_mtim.tv_sec = -1;
	st.st_mtim.tv_nsec = 999999999;
	CHECK_EQ_INT(http_static_etag(&st, tag), strlen(tag));
	CHECK(strlen(tag) < HTTP_STATIC_ETAG_SIZE);
	CHECK(tag[0] == '"' && tag[strlen(tag) - 1] == '"');
	/* each part changes it */
	memset(&st, 0, sizeof(st));
	st2 = st;
	http_static_etag(&st, tag);
	st2.st_mtim.tv_nsec = 1;
	http_static_etag(&st2, tag2);
	CHECK(strcmp(tag, tag2) != 0);
	st2 = st;
	st2.st_size = 1;
	http_static_etag(&st2, tag2);
	CHECK(strcmp(tag, tag2) != 0);
	st2 = st;
	st2.st_ino = 1;
	http_static_etag(&st2, tag2);
	CHECK(strcmp(tag, tag2) != 0);
}

static void
test_date_format(void)
{
	char d[HTTP_DATE_SIZE];

	CHECK_EQ_INT(http_date_format(784111777, d), 29);
	CHECK_EQ_STR(d, "Sun, 06 Nov 1994 08:49:37 GMT");
	CHECK_EQ_INT(http_date_format(0, d), 29);
	CHECK_EQ_STR(d, "Thu, 01 Jan 1970 00:00:00 GMT");
	CHECK_EQ_INT(http_date_format(-1, d), 29);
	CHECK_EQ_STR(d, "Wed, 31 Dec 1969 23:59:59 GMT");
	CHECK_EQ_INT(http_date_format(951782400, d), 29);
	CHECK_EQ_STR(d, "Tue, 29 Feb 2000 00:00:00 GMT");
	CHECK_EQ_INT(http_date_format(2147483647, d), 29);
	CHECK_EQ_STR(d, "Tue, 19 Jan 2038 03:14:07 GMT");
	CHECK_EQ_INT(http_date_format(HTTP_DATE_MAX, d), 29);
	CHECK_EQ_STR(d, "Fri, 31 Dec 9999 23:59:59 GMT");
	CHECK_EQ_INT(http_date_format(HTTP_DATE_MIN, d), 29);
	CHECK_EQ_STR(d, "Sat, 01 Jan 0000 00:00:00 GMT");
	CHECK_EQ_INT(http_date_format(HTTP_DATE_MAX + 1, d), 0);
	CHECK_EQ_STR(d, "");
	CHECK_EQ_INT(http_date_format(HTTP_DATE_MIN - 1, d), 0);
	CHECK_EQ_INT(http_date_format((time_t)INT64_MAX, d), 0);
	CHECK_EQ_INT(http_date_format((time_t)INT64_MIN, d), 0);
}

/* The formatter agrees with gmtime_r, and the parser with the formatter,
 * at a spread of times from year 0 to 9999. */
static void
test_date_round_trip(void)
{
	static const char *const mon[12] = { "Jan", "Feb", "Mar", "Apr",
	    "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	static const char *const wd[7] = { "Sun", "Mon", "Tue", "Wed", "Thu",
	    "Fri", "Sat" };
	char d[HTTP_DATE_SIZE], want[64];
	struct tm tm;
	int64_t t;
	time_t back;
	int bad = 0;

	for (t = HTTP_DATE_MIN; t <= HTTP_DATE_MAX && bad < 5;
	    t += 86400 * 13 + 3607) {
		if (http_date_format((time_t)t, d) != 29) {
			bad++;
			continue;
		}
		gmtime_r(&(time_t){ (time_t)t }, &tm);
		snprintf(want, sizeof(want),
		    "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday],
		    tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
		    tm.tm_min, tm.tm_sec);
		if (strcmp(d, want) != 0 ||
		    http_date_parse(d, 29, &back) != 0 || back != (time_t)t) {
			fprintf(stderr, "date %lld: \"%s\", gmtime \"%s\"\n",
			    (long long)t, d, want);
			bad++;
		}
	}
	CHECK_EQ_INT(bad, 0);
}

static void
test_date_parse(void)
{
	time_t t;
	const time_t now = 1700000000;	/* 2023-11-14 */

	/* the three forms of RFC 9110 5.6.7 */
	CHECK_EQ_INT(http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 29, &t),
	    0);
	CHECK_EQ_INT(t, 784111777);
	CHECK_EQ_INT(http_date_parse_at("Sunday, 06-Nov-94 08:49:37 GMT", 30,
	    now, &t), 0);
	CHECK_EQ_INT(t, 784111777);
	CHECK_EQ_INT(http_date_parse("Sun Nov  6 08:49:37 1994", 24, &t), 0);
	CHECK_EQ_INT(t, 784111777);
	CHECK_EQ_INT(http_date_parse("Sun Nov 06 08:49:37 1994", 24, &t), 0);
	CHECK_EQ_INT(t, 784111777);
	CHECK_EQ_INT(http_date_parse_at("Wednesday, 31-Dec-69 23:59:59 GMT", 33,
	    0, &t), 0);
	CHECK_EQ_INT(t, -1);
	/* the day name is not checked against the date */
	CHECK_EQ_INT(http_date_parse("Mon, 06 Nov 1994 08:49:37 GMT", 29, &t),
	    0);
	CHECK_EQ_INT(t, 784111777);
	/* leap days and a leap second */
	CHECK_EQ_INT(http_date_parse("Tue, 29 Feb 2000 00:00:00 GMT", 29, &t),
	    0);
	CHECK_EQ_INT(t, 951782400);
	CHECK_EQ_INT(http_date_parse("Thu, 29 Feb 2024 12:00:00 GMT", 29, &t),
	    0);
	CHECK_EQ_INT(http_date_parse("Sat, 31 Dec 2016 23:59:60 GMT", 29, &t),
	    0);
	CHECK_EQ_INT(t, 1483228800);
	CHECK_EQ_INT(http_date_parse("Sat, 01 Jan 0000 00:00:00 GMT", 29, &t),
	    0);
	CHECK_EQ_INT(t, HTTP_DATE_MIN);
	CHECK_EQ_INT(http_date_parse("Fri, 31 Dec 9999 23:59:59 GMT", 29, &t),
	    0);
	CHECK_EQ_INT(t, HTTP_DATE_MAX);
}

static void
test_date_parse_bad(void)
{
	static const char *const bad[] = {
		"",
		"Sun, 06 Nov 1994 08:49:37",
		"Sun, 06 Nov 1994 08:49:37 GMT ",
		" Sun, 06 Nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 08:49:37 UTC",
		"Sun, 06 Nov 1994 08:49:37 gmt",
		"sun, 06 Nov 1994 08:49:37 GMT",
		"SUN, 06 Nov 1994 08:49:37 GMT",
		"Sun, 06 nov 1994 08:49:37 GMT",
		"Sun, 06 NOV 1994 08:49:37 GMT",
		"Xyz, 06 Nov 1994 08:49:37 GMT",
		"Sun, 6 Nov 1994 08:49:37 GMT",
		"Sun,  6 Nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 94 08:49:37 GMT",
		"Sun, 06 Nov 1994 8:49:37 GMT",
		"Sun, 06 Nov 1994 08:49:37  GMT",
		"Sun, 06-Nov-1994 08:49:37 GMT",
		"Sun, 00 Nov 1994 08:49:37 GMT",
		"Sun, 31 Nov 1994 08:49:37 GMT",
		"Sun, 29 Feb 1900 08:49:37 GMT",
		"Sun, 29 Feb 2023 08:49:37 GMT",
		"Sun, 32 Jan 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 24:00:00 GMT",
		"Sun, 06 Nov 1994 08:60:00 GMT",
		"Sun, 06 Nov 1994 08:49:61 GMT",
		"Sun, 06 Nov 1994 08-49-37 GMT",
		"Sun, 06 Nov 1994 08:49:3x GMT",
		"Sun, 06 Nov +994 08:49:37 GMT",
		"Sun, -6 Nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
		"Sunday, 06-Nov-94 08:49:37",
		"Sunday, 06-Nov-94 08:49:37 UTC",
		"Sunday, 06 Nov 94 08:49:37 GMT",
		"Sunday, 06-Nov-1994 08:49:37 GMT",
		"Sun, 06-Nov-94 08:49:37 GMT",
		"sunday, 06-Nov-94 08:49:37 GMT",
		"Sundays, 06-Nov-94 08:49:37 GMT",
		"Sunday,06-Nov-94 08:49:37 GMT ",
		"Sunday, 31-Feb-94 08:49:37 GMT",
		"Sun Nov 6 08:49:37 1994",
		"Sun Nov  6 08:49:37 1994 ",
		"Sun Nov  6 08:49:37 94",
		"Sun Nov 6  08:49:37 1994",
		"Sun Nov 31 08:49:37 1994",
		"Sun Nov  0 08:49:37 1994",
		"Sun Nov  6 08:49:37 GMT 1994",
		"Sun  Nov 6 08:49:37 1994",
		"Sunday Nov  6 08:49:37 1994",
		"784111777",
		"Sun, 06 Nov 1994 08:49:37 G\0T",
	};
	size_t i;
	time_t t;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = 42;
		if (http_date_parse(bad[i], strlen(bad[i]), &t) != -1) {
			fprintf(stderr, "date \"%s\" parsed: %lld\n", bad[i],
			    (long long)t);
			check_failures_in_test++;
		}
	}
	/* a NUL inside */
	CHECK_EQ_INT(http_date_parse("Sun, 06 Nov 1994 08:49:37 G\0T", 29, &t),
	    -1);
	/* every shorter prefix of a good one */
	for (i = 0; i < 29; i++)
		CHECK_EQ_INT(http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", i,
		    &t), -1);
}

/* The time of an IMF-fixdate, or -1 (no test uses 1969-12-31T23:59:59). */
static time_t
imf(const char *s)
{
	time_t t;

	return http_date_parse(s, strlen(s), &t) == 0 ? t : -1;
}

/* RFC 9110 5.6.7: a two-digit year that would be more than 50 years in
 * the future is the century before. */
static void
test_date_rfc850_century(void)
{
	static const struct {
		const char *rfc850, *imf;
	} at2023[] = {
		{ "Thursday, 01-Jan-70 00:00:00 GMT",
		  "Wed, 01 Jan 2070 00:00:00 GMT" },
		{ "Saturday, 01-Jan-00 00:00:00 GMT",
		  "Sat, 01 Jan 2000 00:00:00 GMT" },
		{ "Sunday, 01-Jan-23 00:00:00 GMT",
		  "Sun, 01 Jan 2023 00:00:00 GMT" },
		{ "Sunday, 01-Jan-69 00:00:00 GMT",
		  "Tue, 01 Jan 2069 00:00:00 GMT" },
		/* 50 years from 2023-11-14T22:13:20Z, and just past it */
		{ "Sunday, 14-Nov-73 22:13:20 GMT",
		  "Tue, 14 Nov 2073 22:13:20 GMT" },
		{ "Sunday, 14-Nov-73 22:13:21 GMT",
		  "Wed, 14 Nov 1973 22:13:21 GMT" },
		{ "Sunday, 31-Dec-73 00:00:00 GMT",
		  "Mon, 31 Dec 1973 00:00:00 GMT" },
		{ "Sunday, 01-Jan-74 00:00:00 GMT",
		  "Tue, 01 Jan 1974 00:00:00 GMT" },
		{ "Sunday, 06-Nov-94 08:49:37 GMT",
		  "Sun, 06 Nov 1994 08:49:37 GMT" },
	};
	time_t t, y2023 = 1700000000, y2070 = 3155760000;
	size_t i;

	for (i = 0; i < sizeof(at2023) / sizeof(at2023[0]); i++) {
		t = 42;
		CHECK_EQ_INT(http_date_parse_at(at2023[i].rfc850,
		    strlen(at2023[i].rfc850), y2023, &t), 0);
		CHECK_EQ_INT(t, imf(at2023[i].imf));
	}
	/* in 2070, "94" is 2094 rather than 1994 */
	CHECK_EQ_INT(http_date_parse_at("Sunday, 06-Nov-94 08:49:37 GMT", 30,
	    y2070, &t), 0);
	CHECK_EQ_INT(t, imf("Sat, 06 Nov 2094 08:49:37 GMT"));
	/* a 29 February fifty years on is a 1 March */
	CHECK_EQ_INT(http_date_parse_at("Sunday, 01-Mar-74 00:00:00 GMT", 30,
	    imf("Thu, 29 Feb 2024 00:00:00 GMT"), &t), 0);
	CHECK_EQ_INT(t, imf("Fri, 01 Mar 2074 00:00:00 GMT"));
	CHECK_EQ_INT(http_date_parse_at("Sunday, 01-Mar-74 00:00:01 GMT", 30,
	    imf("Thu, 29 Feb 2024 00:00:00 GMT"), &t), 0);
	CHECK_EQ_INT(t, imf("Fri, 01 Mar 1974 00:00:01 GMT"));
	/* before year 0: none */
	CHECK_EQ_INT(http_date_parse_at("Sunday, 01-Jan-99 00:00:00 GMT", 30,
	    HTTP_DATE_MIN, &t), -1);
}

/* A GET with the given header lines (each ending in CR LF). */
static void
get_with(const char *method, const char *headers)
{
	static char head[1024];

	snprintf(head, sizeof(head), "%s /a HTTP/1.1\r\nHost: x\r\n%s\r\n",
	    method, headers);
	CHECK_EQ_INT(parse(head), 0);
}

static void
test_not_modified_inm(void)
{
	static const char tag[] = "\"1-2-3\"";
	static const struct {
		const char *headers;
		bool want;
	} t[] = {
		{ "", false },
		{ "If-None-Match: \"1-2-3\"\r\n", true },
		{ "If-None-Match: W/\"1-2-3\"\r\n", true },
		{ "if-none-match: \"1-2-3\"\r\n", true },
		{ "If-None-Match: \"x\", \"1-2-3\"\r\n", true },
		{ "If-None-Match: \"x\",\"1-2-3\" , \"y\"\r\n", true },
		{ "If-None-Match: ,, \"1-2-3\",,\r\n", true },
		{ "If-None-Match: \"x\"\r\nIf-None-Match: \"1-2-3\"\r\n", true },
		{ "If-None-Match: *\r\n", true },
		{ "If-None-Match: \"x\"\r\n", false },
		{ "If-None-Match: \"1-2-3 \"\r\n", false },
		{ "If-None-Match: \"1-2-\"\r\n", false },
		{ "If-None-Match: 1-2-3\r\n", false },
		{ "If-None-Match: \"1-2-3\r\n", false },
		{ "If-None-Match: w/\"1-2-3\"\r\n", false },
		{ "If-None-Match: \"1-2-3\" x\r\n", false },
		{ "If-None-Match: \"1-2-3\", x\r\n", false },
		{ "If-None-Match: \"a,b\", \"1-2-3\"\r\n", true },
		{ "If-None-Match: *, \"1-2-3\"\r\n", false },
		{ "If-None-Match: *\r\nIf-None-Match: \"x\"\r\n", false },
		{ "If-None-Match: **\r\n", false },
		{ "If-None-Match:\r\n", false },
		/* If-None-Match decides alone, even when it says no */
		{ "If-None-Match: \"x\"\r\n"
		  "If-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT\r\n", false },
		{ "If-None-Match: \"1-2-3\"\r\n"
		  "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n", true },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		get_with("GET", t[i].headers);
		if (http_static_not_modified(&req, tag, 1000) != t[i].want) {
			fprintf(stderr, "not_modified with \"%s\": %d\n",
			    t[i].headers, !t[i].want);
			check_failures_in_test++;
		}
	}
	get_with("HEAD", "If-None-Match: \"1-2-3\"\r\n");
	CHECK(http_static_not_modified(&req, tag, 1000));
	get_with("GET", "If-None-Match: \"1-2-3\"\r\n");
	CHECK(http_static_not_modified(&req, "W/\"1-2-3\"", 1000));
	CHECK(!http_static_not_modified(&req, NULL, 1000));
	get_with("GET", "If-None-Match: *\r\n");
	CHECK(http_static_not_modified(&req, NULL, 1000));
}

static void
test_not_modified_ims(void)
{
	const time_t mtime = 784111777;

	get_with("GET", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
	CHECK(http_static_not_modified(&req, "\"t\"", mtime));
	CHECK(http_static_not_modified(&req, "\"t\"", mtime - 1));
	CHECK(!http_static_not_modified(&req, "\"t\"", mtime + 1));
	get_with("HEAD", "If-Modified-Since: Sun Nov  6 08:49:37 1994\r\n");
	CHECK(http_static_not_modified(&req, "\"t\"", mtime));
	get_with("GET", "If-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT\r\n");
	CHECK(http_static_not_modified(&req, NULL, mtime));
	/* invalid, several, or not GET or HEAD: ignored */
	get_with("GET", "If-Modified-Since: yesterday\r\n");
	CHECK(!http_static_not_modified(&req, "\"t\"", mtime));
	get_with("GET", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
	    "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
	CHECK(!http_static_not_modified(&req, "\"t\"", mtime));
	get_with("GET", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT, "
	    "Sun, 06 Nov 1994 08:49:37 GMT\r\n");
	CHECK(!http_static_not_modified(&req, "\"t\"", mtime));
	get_with("POST", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
	CHECK(!http_static_not_modified(&req, "\"t\"", mtime));
	get_with("POST", "If-None-Match: \"t\"\r\n");
	CHECK(!http_static_not_modified(&req, "\"t\"", mtime));
	get_with("get", "If-None-Match: \"t\"\r\n");
	CHECK(!http_static_not_modified(&req, "\"t\"", mtime));
}

static void
test_method(void)
{
	bool head = true;

	get_with("GET", "");
	CHECK_EQ_INT(http_static_method(&req, &head), 0);
	CHECK(!head);
	get_with("HEAD", "");
	CHECK_EQ_INT(http_static_method(&req, &head), 0);
	CHECK(head);
	CHECK_EQ_INT(http_static_method(&req, NULL), 0);
	get_with("POST", "");
	CHECK_EQ_INT(http_static_method(&req, &head), 405);
	CHECK(!head);
	get_with("get", "");
	CHECK_EQ_INT(http_static_method(&req, NULL), 405);
	get_with("GETS", "");
	CHECK_EQ_INT(http_static_method(&req, NULL), 405);
	get_with("OPTIONS", "");
	CHECK_EQ_INT(http_static_method(&req, NULL), 405);
	get_with("PUT", "");
	CHECK_EQ_INT(http_static_method(&req, NULL), 405);
	get_with("DELETE", "");
	CHECK_EQ_INT(http_static_method(&req, NULL), 405);
}

static void
test_keep_alive(void)
{
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	CHECK(http_static_keep_alive(&req));
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"), 0);
	CHECK(!http_static_keep_alive(&req));
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nConnection: x, Close\r\n\r\n"), 0);
	CHECK(!http_static_keep_alive(&req));
	CHECK_EQ_INT(parse("GET / HTTP/1.0\r\n\r\n"), 0);
	CHECK(!http_static_keep_alive(&req));
	CHECK_EQ_INT(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
	    0);
	CHECK(http_static_keep_alive(&req));
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), 0);
	CHECK(http_static_keep_alive(&req));
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nContent-Length: 000\r\n\r\n"), 0);
	CHECK(http_static_keep_alive(&req));
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), 0);
	CHECK(!http_static_keep_alive(&req));
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nContent-Length:\r\n\r\n"), 0);
	CHECK(!http_static_keep_alive(&req));
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\n"
	    "Content-Length: 0\r\n\r\n"), 0);
	CHECK(!http_static_keep_alive(&req));
	CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "\r\n"), 0);
	CHECK(!http_static_keep_alive(&req));
}

/* A 200 for a file, as the connection layer fills it. */
static struct http_resp
resp_200(void)
{
	struct http_resp r = {
		.status = 200,
		.date = 784111777,
		.content_type = "text/css; charset=utf-8",
		.content_length = 1234,
		.last_modified = 784111000,
		.etag = "\"1-2-3\"",
		.keep_alive = true,
		.keep_alive_timeout = 5,
		.keep_alive_max = 99,
	};

	return r;
}

static void
test_resp_head_200(void)
{
	static const char want[] =
	    "HTTP/1.1 200 OK\r\n"
	    "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
	    "Server: gatewayd\r\n"
	    "Content-Type: text/css; charset=utf-8\r\n"
	    "Content-Length: 1234\r\n"
	    "Last-Modified: Sun, 06 Nov 1994 08:36:40 GMT\r\n"
	    "ETag: \"1-2-3\"\r\n"
	    "Accept-Ranges: none\r\n"
	    "Cache-Control: no-cache\r\n"
	    "X-Content-Type-Options: nosniff\r\n"
	    "Connection: keep-alive\r\n"
	    "Keep-Alive: timeout=5, max=99\r\n"
	    "\r\n";
	struct http_resp r = resp_200();
	char buf[1024];
	size_t i, n;

	CHECK_EQ_INT(http_resp_head(buf, sizeof(buf), &r), strlen(want));
	CHECK_EQ_STR(buf, want);
	/* every size too small says 0, and the exact size does */
	for (i = 0; i <= strlen(want); i++) {
		n = http_resp_head(i == 0 ? NULL : buf, i, &r);
		CHECK_EQ_INT(n, 0);
		if (i > 0)
			CHECK_EQ_STR(buf, "");
	}
	CHECK_EQ_INT(http_resp_head(buf, strlen(want) + 1, &r), strlen(want));

	/* closing, without validators, and a file of 0 bytes */
	r.keep_alive = false;
	r.etag = NULL;
	r.last_modified = 0;
	r.content_length = 0;
	r.content_type = NULL;
	CHECK(http_resp_head(buf, sizeof(buf), &r) > 0);
	CHECK_EQ_STR(buf,
	    "HTTP/1.1 200 OK\r\n"
	    "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
	    "Server: gatewayd\r\n"
	    "Content-Length: 0\r\n"
	    "Accept-Ranges: none\r\n"
	    "Cache-Control: no-cache\r\n"
	    "X-Content-Type-Options: nosniff\r\n"
	    "Connection: close\r\n"
	    "\r\n");
	/* kept alive without a Keep-Alive header */
	r = resp_200();
	r.keep_alive_timeout = 0;
	CHECK(http_resp_head(buf, sizeof(buf), &r) > 0);
	CHECK(strstr(buf, "Connection: keep-alive\r\n") != NULL);
	CHECK(strstr(buf, "Keep-Alive") == NULL);
	/* a file of 2^63 bytes */
	r.content_length = UINT64_MAX;
	CHECK(http_resp_head(buf, sizeof(buf), &r) > 0);
	CHECK(strstr(buf, "Content-Length: 18446744073709551615\r\n") != NULL);
}

static void
test_resp_head_fields(void)
{
	struct http_resp r = resp_200();
	char buf[1024];

	/* a file modified after now (a clock set back): Last-Modified is
	 * now (RFC 9110 8.8.2.1) */
	r.last_modified = r.date + 3600;
	CHECK(http_resp_head(buf, sizeof(buf), &r) > 0);
	CHECK(strstr(buf, "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n")
	    != NULL);
	/* a 304 has no Content-*, nor nosniff, nor Accept-Ranges */
	r = resp_200();
	r.status = 304;
	CHECK(http_resp_head(buf, sizeof(buf), &r) > 0);
	CHECK_EQ_STR(buf,
	    "HTTP/1.1 304 Not Modified\r\n"
	    "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
	    "Server: gatewayd\r\n"
	    "Last-Modified: Sun, 06 Nov 1994 08:36:40 GMT\r\n"
	    "ETag: \"1-2-3\"\r\n"
	    "Cache-Control: no-cache\r\n"
	    "Connection: keep-alive\r\n"
	    "Keep-Alive: timeout=5, max=99\r\n"
	    "\r\n");
	/* Location only with a 3xx, Allow only with 405 */
	r = resp_200();
	r.location = "/x/";
	CHECK(http_resp_head(buf, sizeof(buf), &r) > 0);
	CHECK(strstr(buf, "Location") == NULL);
	CHECK(strstr(buf, "Allow") == NULL);
	/* no control character gets into a field */
	r = resp_200();
	r.content_type = "text/html\r\nSet-Cookie: a=b";
	CHECK_EQ_INT(http_resp_head(buf, sizeof(buf), &r), 0);
	r = resp_200();
	r.etag = "\"a\"\nX: y";
	CHECK_EQ_INT(http_resp_head(buf, sizeof(buf), &r), 0);
	r = resp_200();
	r.status = 301;
	r.location = "/a\r\n";
	CHECK_EQ_INT(http_resp_head(buf, sizeof(buf), &r), 0);
	r.location = "/a\x7f";
	CHECK_EQ_INT(http_resp_head(buf, sizeof(buf), &r), 0);
	/* statuses and dates out of range */
	r = resp_200();
	r.status = 101;
	CHECK_EQ_INT(http_resp_head(buf, sizeof(buf), &r), 0);
	r.status = 600;
	CHECK_EQ_INT(http_resp_head(buf, sizeof(buf), &r), 0);
	r.status = 200;
	r.date = HTTP_DATE_MAX + 1;
	CHECK_EQ_INT(http_resp_head(buf, sizeof(buf), &r), 0);
}

/* HTTP_RESP_HEAD_MAX holds the longest head without a Location. */
static void
test_resp_head_max(void)
{
	static const int statuses[] = { 200, 304, 400, 403, 404, 405, 414,
	    431, 500, 503, 505 };
	struct http_resp r = resp_200();
	char buf[HTTP_RESP_HEAD_MAX];
	size_t i;

	r.content_length = UINT64_MAX;
	r.etag = "\"ffffffffffffffff-7fffffffffffffff-ffffffffffffffff\"";
	r.keep_alive_timeout = UINT32_MAX;
	r.keep_alive_max = UINT32_MAX;
	r.content_type = "image/vnd.microsoft.icon";
	r.date = HTTP_DATE_MAX;
	r.last_modified = HTTP_DATE_MAX;
	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		r.status = statuses[i];
		CHECK(http_resp_head(buf, sizeof(buf), &r) > 0);
		CHECK(http_resp_error(buf, sizeof(buf), &r, false) > 0);
	}
}

static void
test_resp_error(void)
{
	struct http_resp r = {
		.status = 404,
		.date = 784111777,
		.content_type = "text/css",
		.content_length = 99,
		.last_modified = 784111000,
		.etag = "\"1-2-3\"",
		.keep_alive = true,
		.keep_alive_timeout = 5,
		.keep_alive_max = 10,
	};
	static const char want_404[] =
	    "HTTP/1.1 404 Not Found\r\n"
	    "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
	    "Server: gatewayd\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 10\r\n"
	    "X-Content-Type-Options: nosniff\r\n"
	    "Connection: keep-alive\r\n"
	    "Keep-Alive: timeout=5, max=10\r\n"
	    "\r\n"
	    "Not Found\n";
	char buf[1024];
	size_t i, n;

	CHECK_EQ_INT(http_resp_error(buf, sizeof(buf), &r, false),
	    strlen(want_404));
	CHECK_EQ_STR(buf, want_404);
	/* HEAD: the same head, no body */
	n = http_resp_error(buf, sizeof(buf), &r, true);
	CHECK_EQ_INT(n, strlen(want_404) - 10);
	CHECK(memcmp(buf, want_404, n) == 0 && buf[n] == '\0');
	for (i = 0; i <= strlen(want_404); i++)
		CHECK_EQ_INT(http_resp_error(i == 0 ? NULL : buf, i, &r, false),
		    0);
	CHECK_EQ_INT(http_resp_error(buf, strlen(want_404) + 1, &r, false),
	    strlen(want_404));

	/* 405 says what is allowed */
	r.status = 405;
	r.keep_alive = false;
	CHECK(http_resp_error(buf, sizeof(buf), &r, false) > 0);
	CHECK(strncmp(buf, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
	CHECK(strstr(buf, "\r\nAllow: GET, HEAD\r\n") != NULL);
	CHECK(strstr(buf, "\r\nConnection: close\r\n\r\nMethod Not Allowed\n")
	    != NULL);
	/* 301 with its Location */
	r.status = 301;
	r.location = "/static/";
	CHECK(http_resp_error(buf, sizeof(buf), &r, false) > 0);
	CHECK(strncmp(buf, "HTTP/1.1 301 Moved Permanently\r\n", 32) == 0);
	CHECK(strstr(buf, "\r\nLocation: /static/\r\n") != NULL);
	CHECK(strstr(buf, "Cache-Control") == NULL);
	CHECK(strstr(buf, "ETag") == NULL);
	CHECK(strstr(buf, "Last-Modified") == NULL);
	/* the others of the list, and a body of one's own */
	r.location = NULL;
	r.status = 400;
	r.body = "a dot segment";
	CHECK(http_resp_error(buf, sizeof(buf), &r, false) > 0);
	CHECK(strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
	CHECK(strstr(buf, "Content-Length: 14\r\n") != NULL);
	CHECK(strstr(buf, "\r\n\r\na dot segment\n") != NULL);
	r.body = NULL;
	r.status = 403;
	CHECK(http_resp_error(buf, sizeof(buf), &r, false) > 0);
	CHECK(strstr(buf, "HTTP/1.1 403 Forbidden\r\n") == buf);
	r.status = 414;
	CHECK(http_resp_error(buf, sizeof(buf), &r, false) > 0);
	CHECK(strstr(buf, "HTTP/1.1 414 URI Too Long\r\n") == buf);
	r.status = 500;
	CHECK(http_resp_error(buf, sizeof(buf), &r, false) > 0);
	CHECK(strstr(buf, "HTTP/1.1 500 Internal Server Error\r\n") == buf);
	r.status = 503;
	CHECK(http_resp_error(buf, sizeof(buf), &r, false) > 0);
	CHECK(strstr(buf, "HTTP/1.1 503 Service Unavailable\r\n") == buf);
	/* not an error: sent as 500 */
	r.status = 200;
	CHECK(http_resp_error(buf, sizeof(buf), &r, false) > 0);
	CHECK(strstr(buf, "HTTP/1.1 500 ") == buf);
	r.status = 304;
	CHECK(http_resp_error(buf, sizeof(buf), &r, false) > 0);
	CHECK(strstr(buf, "HTTP/1.1 500 ") == buf);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	RUN(test_target_prefix_root);
	RUN(test_target_prefix_dir);
	RUN(test_target_decode);
	RUN(test_target_bad_escapes);
	RUN(test_target_traversal);
	RUN(test_target_harmless);
	RUN(test_target_too_long);
	RUN(test_prefix_check);
	RUN(test_index_check);
	RUN(test_location);
	RUN(test_mime);
	RUN(test_open_openat2);
	RUN(test_open_walk);
	RUN(test_open_denied);
	RUN(test_errno_status);
	RUN(test_etag);
	RUN(test_date_format);
	RUN(test_date_round_trip);
	RUN(test_date_parse);
	RUN(test_date_parse_bad);
	RUN(test_date_rfc850_century);
	RUN(test_not_modified_inm);
	RUN(test_not_modified_ims);
	RUN(test_method);
	RUN(test_keep_alive);
	RUN(test_resp_head_200);
	RUN(test_resp_head_fields);
	RUN(test_resp_head_max);
	RUN(test_resp_error);
	return check_summary();
}
