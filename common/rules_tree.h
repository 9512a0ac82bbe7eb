/* rules_tree.h - private to the rule language: the expression tree that
 * rules.c (lexer, parser) builds once per rule and rules_eval.c (the
 * interpreter) walks per check, and the regular expressions both compile.
 * Nothing outside rules.c and rules_eval.c includes it; the public face is
 * rules.h. */
#ifndef EDDY_RULES_TREE_H
#define EDDY_RULES_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rules.h"

enum node_kind {
    /* literals */
    N_NUM, N_STR, N_BOOL, N_NULL, N_UNDEF, N_REGEX, N_ARRAY,
    /* what a rule reads */
    N_USER, N_USER_ID, N_USER_AUTH, N_USER_DATA, N_DATA, N_OLD_DATA, N_NOW, N_NAME, N_ACTION, N_VAR,
    /* access and calls */
    N_MEMBER, N_INDEX, N_CALL, N_XREF,
    /* unary */
    N_NOT, N_NEG, N_POS, N_TYPEOF,
    /* binary */
    N_ADD, N_SUB, N_MUL, N_DIV, N_MOD,
    N_LT, N_LE, N_GT, N_GE, N_EQ, N_NE, N_SEQ, N_SNE,
    N_AND, N_OR, N_NULLISH, N_COND,
    /* a run of operators of one precedence level (a + b - c, a || b || c),
     * folded from the left: as deep as one operator, however long */
    N_CHAIN
};

/* One operator of an N_CHAIN: the kind (N_ADD ... N_NULLISH) and where it is written. */
typedef struct chain_op {
    uint32_t pos;
    uint8_t kind;
} chain_op;

/* The string methods a rule may call (deepstream's rule-parser list, less `_`). */
enum method { M_STARTS_WITH, M_ENDS_WITH, M_INCLUDES, M_INDEX_OF, M_MATCH, M_TO_UPPER, M_TO_LOWER, M_TRIM, M_COUNT };
extern const char *const rules_method_names[M_COUNT];

/* A compiled regular expression: a literal /.../flags, or the string
 * argument of match(). Owned by its rule (or by one evaluation, for a
 * pattern made at run time). */
typedef struct rules_rx {
    void *code; /* pcre2_code */
    bool global, sticky, jit;
    const char *src; /* as written, for String(): "/src/flags" */
    size_t src_len;
    char flags[8];
} rules_rx;

typedef struct node node;
struct node {
    uint8_t kind;
    uint8_t paren;    /* written in parentheses: an optional chain ends here */
    uint8_t optional; /* `?.` before this member, index or method call */
    uint8_t method;   /* N_CALL: enum method */
    uint32_t pos;     /* byte offset in the rule's text, for columns */
    uint32_t n;       /* N_STR, N_MEMBER: bytes; N_VAR: variable index; N_ARRAY, N_CALL, N_XREF, N_CHAIN: list length */
    uint16_t depth;   /* 1 + the deepest child */
    union {
        double num;      /* N_NUM */
        bool b;          /* N_BOOL */
        const char *str; /* N_STR, N_MEMBER (the member's name) */
        rules_rx *rx;    /* N_REGEX; N_CALL to match() with a literal string: that string compiled */
        chain_op *ops;   /* N_CHAIN: n - 1 operators between the n operands of list */
    } u;
    node *a, *b, *c; /* operands; N_MEMBER, N_INDEX, N_CALL: a is the object, N_INDEX: b the index */
    node **list;     /* N_ARRAY elements, N_CALL and N_XREF arguments, N_CHAIN operands */
};

struct rule {
    char *text; /* the rule as written (NUL-terminated copy; identifiers point into it) */
    size_t text_len;
    node *root;
    node *nodes; /* every node, one block */
    node **lists;
    chain_op *ops; /* every N_CHAIN's operators, one block */
    char *strs; /* decoded string literals and regex sources */
    rules_rx **rxs;
    size_t nrx, rx_cap;
    unsigned reads;  /* RULE_READS_* */
    int constant;    /* -1: an expression; 0, 1: the boolean rule false, true */
    size_t nvars;    /* the scope's variable count, as compiled */
};

/* Compiles a JavaScript regular expression (src, flags as written) with
 * PCRE2 in its JavaScript-compatible mode. Returns it (owned by the caller:
 * rules_rx_free) or NULL with PCRE2's reason in err and the byte offset in
 * src in *off. */
rules_rx *rules_rx_compile(const char *src, size_t len, const char *flags, size_t flags_len, bool jit, char *err,
                           size_t err_len, size_t *off);
void rules_rx_free(rules_rx *rx); /* NULL is fine */

/* The 1-based column (in characters) of byte offset pos of text. */
size_t rules_column(const char *text, size_t len, size_t pos);

#endif
