/* The early agent's JSON: see early-json.h. */
#include "early-json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void buf_put(struct buf *b, const void *d, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (b->n + n + 1 > cap) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) _exit(70);
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
  b->p[b->n] = 0;
}

void buf_puts(struct buf *b, const char *s) { buf_put(b, s, strlen(s)); }



void json_ws(struct js *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

int json_eat(struct js *j, char c) {
  json_ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return 1;
  }
  return 0;
}

static int hex4(const char *s, unsigned *v) {
  *v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    *v = *v << 4 | (unsigned)d;
  }
  return 0;
}

static void utf8(struct buf *out, unsigned cp) {
  char b[4];
  size_t n;
  if (cp < 0x80) b[0] = (char)cp, n = 1;
  else if (cp < 0x800) b[0] = (char)(0xc0 | cp >> 6), b[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
  else if (cp < 0x10000)
    b[0] = (char)(0xe0 | cp >> 12), b[1] = (char)(0x80 | (cp >> 6 & 0x3f)), b[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
  else
    b[0] = (char)(0xf0 | cp >> 18), b[1] = (char)(0x80 | (cp >> 12 & 0x3f)), b[2] = (char)(0x80 | (cp >> 6 & 0x3f)),
    b[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
  buf_put(out, b, n);
}

/* A lone surrogate fails. */
int json_str(struct js *j, struct buf *out) {
  if (!json_eat(j, '"')) return -1;
  while (j->p < j->end) {
    unsigned char c = (unsigned char)*j->p++;
    if (c == '"') return 0;
    if (c < 0x20) return -1;
    if (c != '\\') {
      buf_put(out, &c, 1);
      continue;
    }
    if (j->p >= j->end) return -1;
    char e = *j->p++;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e && simple) {
      buf_put(out, &"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"], 1);
      continue;
    }
    unsigned cp, lo;
    if (e != 'u' || j->end - j->p < 4 || hex4(j->p, &cp) < 0) return -1;
    j->p += 4;
    if (cp >= 0xdc00 && cp < 0xe000) return -1;
    if (cp >= 0xd800 && cp < 0xdc00) {
      if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || hex4(j->p + 2, &lo) < 0 || lo < 0xdc00 || lo >= 0xe000)
        return -1;
      j->p += 6;
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    utf8(out, cp);
  }
  return -1;
}

int json_num(struct js *j, double *v) {
  json_ws(j);
  const char *s = j->p;
  if (j->p < j->end && *j->p == '-') j->p++;
  size_t digits = strspn(j->p, "0123456789");
  if (digits == 0) return -1;
  j->p += digits;
  if (*j->p == '.') j->p += 1 + strspn(j->p + 1, "0123456789");
  if (*j->p == 'e' || *j->p == 'E') {
    j->p++;
    if (*j->p == '+' || *j->p == '-') j->p++;
    j->p += strspn(j->p, "0123456789");
  }
  if (j->p > j->end) return -1;
  char tmp[64];
  size_t n = (size_t)(j->p - s);
  if (n >= sizeof tmp) return -1;
  memcpy(tmp, s, n);
  tmp[n] = 0;
  char *endp;
  *v = strtod(tmp, &endp);
  return *endp == 0 ? 0 : -1;
}

int json_skip(struct js *j, int depth) {
  json_ws(j);
  if (j->p >= j->end || depth > 64) return -1;
  struct buf scratch = {0};
  double d;
  int r = 0;
  switch (*j->p) {
  case '"':
    r = json_str(j, &scratch);
    break;
  case '{':
  case '[': {
    char close = *j->p == '{' ? '}' : ']';
    j->p++;
    if (json_eat(j, close)) break;
    do {
      if (close == '}' && (json_str(j, &scratch) < 0 || !json_eat(j, ':'))) r = -1;
      if (r == 0) r = json_skip(j, depth + 1);
    } while (r == 0 && json_eat(j, ','));
    if (r == 0 && !json_eat(j, close)) r = -1;
    break;
  }
  default:
    for (const char *w = "true\0false\0null\0"; *w; w += strlen(w) + 1)
      if ((size_t)(j->end - j->p) >= strlen(w) && memcmp(j->p, w, strlen(w)) == 0) {
        j->p += strlen(w);
        free(scratch.p);
        return 0;
      }
    r = json_num(j, &d);
  }
  free(scratch.p);
  return r;
}

int json_object(struct js *j, int (*member)(const char *key, struct js *j, void *ctx), void *ctx) {
  if (!json_eat(j, '{')) return -1;
  if (json_eat(j, '}')) return 0;
  do {
    struct buf key = {0};
    int r = json_str(j, &key) < 0 || !json_eat(j, ':') ? -1 : member(key.p ? key.p : "", j, ctx);
    free(key.p);
    if (r < 0) return -1;
  } while (json_eat(j, ','));
  return json_eat(j, '}') ? 0 : -1;
}

char *json_cstr(struct js *j) {
  struct buf b = {0};
  if (json_str(j, &b) < 0 || memchr(b.p ? b.p : "", 0, b.n)) {
    free(b.p);
    return NULL;
  }
  return b.p ? b.p : strdup("");
}

void json_quote(struct buf *out, const unsigned char *s, size_t n) {
  buf_put(out, "\"", 1);
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    if (c < 0x80) {
      char esc[8];
      const char *named = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
      if (named) buf_puts(out, named);
      else if (c < 0x20) snprintf(esc, sizeof esc, "\\u%04x", c), buf_puts(out, esc);
      else buf_put(out, &c, 1);
      i++;
      continue;
    }
    /* the length of a well-formed sequence starting here, or how many bytes make the bad one */
    size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80, hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
    size_t ok = len ? 1 : 0;
    while (ok && ok < len && i + ok < n && s[i + ok] >= (ok == 1 ? lo : 0x80) && s[i + ok] <= (ok == 1 ? hi : 0xbf)) ok++;
    if (len && ok == len) buf_put(out, s + i, len), i += len;
    else buf_puts(out, "\xef\xbf\xbd"), i += ok ? ok : 1;
  }
  buf_put(out, "\"", 1);
}
