/*
 * The early agent's JSON (early-agent.c): a growable byte buffer, a reader of just what a request
 * needs (anything unexpected makes the parse fail, and the early agent then hands the request to
 * node's agent), and a string writer that decodes UTF-8 as node does. Hand-written: the guest's
 * init is static C with no library but libc, and the requests are small.
 */
#ifndef KATA_EARLY_JSON_H
#define KATA_EARLY_JSON_H

#include <stddef.h>

/* Bytes, NUL-terminated after n; allocation failure exits (kata-init then leaves the port to node). */
struct buf {
  char *p;
  size_t n, cap;
};

void buf_put(struct buf *b, const void *d, size_t n);
void buf_puts(struct buf *b, const char *s);

/* A JSON text being read, from p to end. Each reader returns 0, or -1 for what it cannot take. */
struct js {
  const char *p, *end;
};

void json_ws(struct js *j);
/* 1 when the next character (after white space) is c, which is then consumed. */
int json_eat(struct js *j, char c);
/* A string, decoded into out (which may then hold NULs: out->n counts them). */
int json_str(struct js *j, struct buf *out);
/* A number as JSON writes it; its value in *v. */
int json_num(struct js *j, double *v);
/* Any value, skipped. */
int json_skip(struct js *j, int depth);
/* An object's members: member(key, j, ctx) is called positioned on each value. */
int json_object(struct js *j, int (*member)(const char *key, struct js *j, void *ctx), void *ctx);
/* A string without NULs, as a C string the caller frees; NULL when it is not one. */
char *json_cstr(struct js *j);
/* `s` written as a JSON string, its bytes decoded as UTF-8 the way node does (each bad sequence: U+FFFD). */
void json_quote(struct buf *out, const unsigned char *s, size_t n);

#endif
