/* The validator's quick look for a key written twice in one object (SPEC §5,
 * `duplicate_key`; see duplicates.py, which falls back to Python without this module).
 *
 * scan(text) -> int, for a JSON text (bytes-like or str) that a decoder has read already:
 *    0  no object of the text holds a key twice;
 *    1  an object does;
 *   -1  not sure: a key holds an escape (so "a" and "\u0061" are not told apart here), an
 *       object has more than MAX_OBJECT_KEYS keys, the open objects more than MAX_KEYS,
 *       the nesting passes MAX_DEPTH, or the text is not what valid JSON would be. The
 *       exact check in Python answers then.
 *
 * Keys are compared byte for byte, which is exact for keys without a backslash: the text
 * is UTF-8, and two keys are the same string exactly when their bytes are the same.
 *
 * The text comes from untrusted files and its answer is only trusted for valid JSON, but
 * every read stays inside the buffer whatever it holds (a string that never ends, a
 * backslash as its last byte, NUL bytes, invalid UTF-8, brackets that never close or close
 * too often): every pointer is compared with `end` before it is read, and the 16-byte
 * loads are only made when 16 bytes are left. Nothing is allocated: the open objects'
 * keys are kept on the C stack, as spans of the text.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_DEPTH 256       /* objects and arrays open at once */
#define MAX_KEYS 1024       /* keys of all the open objects together */
#define MAX_OBJECT_KEYS 64  /* keys of one object: each new key is compared with them all */

typedef unsigned char uchar;

typedef struct {
    const uchar *start;
    Py_ssize_t size;
    uint64_t tag; /* size and three of its bytes: most different keys differ here */
} Key;

/* Bytes that matter outside strings: a quote and the four brackets. */
static uchar STRUCTURAL[256];
/* Bytes that end a run of a string's plain bytes: its closing quote or a backslash. */
static uchar STRING_STOP[256];

static inline int first_set_bit(unsigned mask) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctz(mask);
#else
    int n = 0;
    while (!(mask & 1u)) { mask >>= 1; n++; }
    return n;
#endif
}

/* The first quote or bracket in [p, end), or end. */
static inline const uchar *next_structural(const uchar *p, const uchar *end) {
    /* Between two strings there are a few bytes only (a colon, a comma, a number). */
    for (int i = 0; i < 8 && p < end; i++, p++)
        if (STRUCTURAL[*p]) return p;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i lower = _mm_set1_epi8(0x20);
    const __m128i open = _mm_set1_epi8('{');  /* '[' | 0x20 == '{' */
    const __m128i close = _mm_set1_epi8('}'); /* ']' | 0x20 == '}' */
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i folded = _mm_or_si128(v, lower);
        __m128i hit = _mm_or_si128(
            _mm_cmpeq_epi8(v, quote),
            _mm_or_si128(_mm_cmpeq_epi8(folded, open), _mm_cmpeq_epi8(folded, close)));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask) return p + first_set_bit(mask);
        p += 16;
    }
#endif
    while (p < end && !STRUCTURAL[*p]) p++;
    return p;
}

/* The first quote or backslash in [p, end), or end. */
static inline const uchar *next_string_stop(const uchar *p, const uchar *end) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask) return p + first_set_bit(mask);
        p += 16;
    }
#endif
    while (p < end && !STRING_STOP[*p]) p++;
    return p;
}

static inline int is_blank(uchar c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* 0, 1 or -1 as said above, for the `size` bytes at `text`. */
static int scan_text(const uchar *text, Py_ssize_t size) {
    const uchar *p = text;
    const uchar *const end = text + size;
    Key keys[MAX_KEYS];
    int nkeys = 0;
    /* Per open bracket: for an object, the index of its first key in `keys`; -1 for an
       array. */
    int starts[MAX_DEPTH];
    int depth = 0;

    for (;;) {
        p = next_structural(p, end);
        if (p == end) return 0;
        uchar c = *p;
        if (c == '"') {
            const uchar *first = p + 1; /* the string's first byte */
            const uchar *q = first;
            int escaped = 0;
            for (;;) {
                q = next_string_stop(q, end);
                if (q == end) return -1; /* the string never ends */
                if (*q == '"') break;
                /* A backslash and the byte it escapes (a quote, perhaps). */
                escaped = 1;
                if (end - q < 2) return -1;
                q += 2;
            }
            /* [first, q) are the string's bytes; q is its closing quote. */
            const uchar *after = q + 1;
            while (after < end && is_blank(*after)) after++;
            if (after == end || *after != ':') { /* a value */
                p = q + 1;
                continue;
            }
            /* A key of the object opened last. */
            if (depth == 0 || starts[depth - 1] < 0) return -1; /* not valid JSON */
            if (escaped) return -1;
            int base = starts[depth - 1];
            if (nkeys - base >= MAX_OBJECT_KEYS || nkeys >= MAX_KEYS) return -1;
            Py_ssize_t n = q - first;
            uint64_t tag = (uint64_t)n << 24;
            if (n) tag |= (uint64_t)first[0] << 16 | (uint64_t)first[n / 2] << 8 | first[n - 1];
            for (int i = base; i < nkeys; i++)
                if (keys[i].tag == tag && memcmp(keys[i].start, first, (size_t)n) == 0)
                    return 1;
            keys[nkeys].start = first;
            keys[nkeys].size = n;
            keys[nkeys].tag = tag;
            nkeys++;
            p = after + 1;
        } else if (c == '{' || c == '[') {
            if (depth == MAX_DEPTH) return -1;
            starts[depth++] = c == '{' ? nkeys : -1;
            p++;
        } else { /* '}' or ']' */
            if (depth == 0) return -1; /* not valid JSON */
            depth--;
            if (starts[depth] >= 0) nkeys = starts[depth];
            p++;
        }
    }
}

static PyObject *scan(PyObject *module, PyObject *arg) {
    (void)module;
    int found;
    if (PyUnicode_Check(arg)) { /* a CSV cell */
        Py_ssize_t size;
        const char *text = PyUnicode_AsUTF8AndSize(arg, &size);
        if (text == NULL) { /* a lone surrogate: Python reads it */
            PyErr_Clear();
            found = -1;
        } else {
            found = scan_text((const uchar *)text, size);
        }
    } else {
        Py_buffer view;
        if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
        found = scan_text((const uchar *)view.buf, view.len);
        PyBuffer_Release(&view);
    }
    return PyLong_FromLong(found);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O,
     "scan(text, /)\n--\n\n"
     "0: no object of the JSON text holds a key twice; 1: one does; -1: not sure."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_dupscan",
    "A quick look for a key written twice in a JSON object (see duplicates.py).",
    0,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__dupscan(void) {
    memset(STRUCTURAL, 0, sizeof STRUCTURAL);
    STRUCTURAL['"'] = STRUCTURAL['{'] = STRUCTURAL['}'] = STRUCTURAL['['] = STRUCTURAL[']'] = 1;
    memset(STRING_STOP, 0, sizeof STRING_STOP);
    STRING_STOP['"'] = STRING_STOP['\\'] = 1;
    return PyModuleDef_Init(&module);
}
