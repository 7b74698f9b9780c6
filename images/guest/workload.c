/*
 * nc-workload: the NovaCron guest workload.
 *
 * Runs inside the tiny guest (started by /init). Reads its parameters from /proc/cmdline
 * and writes single-line status records to the console (stdout, which /init points at
 * /dev/console). Every record is formatted into one buffer and written with one write(),
 * so lines from different threads and processes never interleave.
 *
 * Modes:
 *   nc-workload           the workload: NC-READY, heartbeats, dirtier, pattern verifier
 *   nc-workload --powerd  waits for the ACPI power button (KEY_POWER on /dev/input/event*),
 *                         prints NC-SHUTDOWN, syncs and powers the machine off
 *
 * Line formats are documented in images/README.md; keep both in sync.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <linux/input.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024ULL * 1024ULL)
#define PAGE 4096ULL
#define LINE_MAX_LEN 512

#define DISK_DEV "/dev/vda"
#define DISK_DATA_OFFSET 4096ULL /* pattern data starts after the 4 KiB header block */
#define DISK_IO_CHUNK (1024ULL * 1024ULL)
#define HDR_MAGIC "NCPATTERN"
#define HDR_VERSION 1u

#define GOLDEN 0x9E3779B97F4A7C15ULL
#define DOMAIN_MEM 0x4E432D4D454D0001ULL  /* "NC-MEM" */
#define DOMAIN_DISK 0x4E432D4449534B01ULL /* "NC-DISK" */

/* ---------------------------------------------------------------- output ---------- */

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...) {
  char buf[LINE_MAX_LEN];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = (int)(sizeof buf - 2);
  buf[n++] = '\n';
  /* One write() per line. Retry only on EINTR (nothing was written then). */
  for (;;) {
    ssize_t w = write(STDOUT_FILENO, buf, (size_t)n);
    if (w >= 0 || errno != EINTR) break;
  }
}

/* A value from the command line, made safe to print: printable ASCII only, bounded. */
static void sanitize(const char *in, char *out, size_t outsz) {
  size_t j = 0;
  for (size_t i = 0; in[i] && j + 1 < outsz && i < 64; i++) {
    unsigned char c = (unsigned char)in[i];
    out[j++] = (c > 32 && c < 127) ? (char)c : '?';
  }
  out[j] = 0;
  if (j == 0 && outsz > 2) strcpy(out, "\"\"");
}

/* ---------------------------------------------------------------- clocks ---------- */

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  if (s <= 0) return;
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void read_uptime(char *out, size_t outsz) {
  /* /proc/uptime already has two decimals: "123.45 67.89" */
  snprintf(out, outsz, "0.00");
  int fd = open("/proc/uptime", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[48];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = 0;
  char *sp = strchr(buf, ' ');
  if (sp) *sp = 0;
  snprintf(out, outsz, "%s", buf);
}

/* ---------------------------------------------------------------- PRNGs ----------- */

static inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* Word i (0-based) of a pattern stream: splitmix64 seeded with `base`, counter-based so
 * any position can be regenerated on its own. Byte k of the stream is byte (k % 8) of
 * little-endian word (k / 8). */
static inline uint64_t pattern_word(uint64_t base, uint64_t i) { return mix64(base + (i + 1) * GOLDEN); }

static inline uint64_t xorshift64(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

/* ---------------------------------------------------------------- parameters ------ */

struct params {
  /* dirtier */
  int dirty_on;
  uint64_t dirty_mb;
  uint64_t dirty_rate_mbps;
  unsigned mix_zero, mix_text, mix_random;
  /* pattern */
  int pattern_on;
  uint64_t pattern_seed;
  uint64_t pattern_mem_mb;
  uint64_t pattern_disk_mb;
  uint64_t verify_every;
  /* bookkeeping */
  int debug;
  int errors;
  char pending[16][LINE_MAX_LEN]; /* NC-ERROR lines printed after NC-READY */
  int npending;
};

static struct params P;

static void param_error(const char *name, const char *value, const char *reason) {
  char v[80];
  sanitize(value, v, sizeof v);
  P.errors++;
  if (P.npending < 16) {
    snprintf(P.pending[P.npending++], LINE_MAX_LEN, "NC-ERROR param=%s value=%s reason=%s", name, v, reason);
  }
}

/* Unsigned decimal (or 0x-hex) integer, whole string, no sign, no overflow. */
static int parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return -1;
  errno = 0;
  char *end = NULL;
  int base = (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10;
  unsigned long long v = strtoull(s, &end, base);
  if (end == s || *end != 0) return -1;
  if (errno == ERANGE) return -2;
  if (errno != 0) return -1;
  *out = (uint64_t)v;
  return 0;
}

/* nc.NAME=value holding an integer in [lo, hi]; returns 0 when ok. */
static int param_u64(const char *name, const char *value, uint64_t lo, uint64_t hi, uint64_t *out) {
  uint64_t v;
  int rc = parse_u64(value, &v);
  if (rc == -1) {
    param_error(name, value, "not_a_number");
    return -1;
  }
  if (rc != 0 || v < lo || v > hi) {
    param_error(name, value, "out_of_range");
    return -1;
  }
  *out = v;
  return 0;
}

/* zero:<pct>,text:<pct>,random:<pct>: each class at most once, any order, missing = 0,
 * sum must be exactly 100. */
static int parse_mix(const char *s, unsigned *z, unsigned *t, unsigned *r) {
  unsigned vals[3] = {0, 0, 0};
  int seen[3] = {0, 0, 0};
  const char *names[3] = {"zero", "text", "random"};
  char buf[128];
  if (strlen(s) >= sizeof buf || !*s) return -1;
  strcpy(buf, s);
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *colon = strchr(tok, ':');
    if (!colon) return -1;
    *colon = 0;
    int k = -1;
    for (int i = 0; i < 3; i++)
      if (strcmp(tok, names[i]) == 0) k = i;
    if (k < 0 || seen[k]) return -1;
    uint64_t v;
    if (parse_u64(colon + 1, &v) != 0 || v > 100) return -1;
    seen[k] = 1;
    vals[k] = (unsigned)v;
  }
  if (vals[0] + vals[1] + vals[2] != 100) return -1;
  *z = vals[0];
  *t = vals[1];
  *r = vals[2];
  return 0;
}

static void parse_cmdline(const char *cmdline) {
  int dirty_bad = 0, pattern_bad = 0;
  int seed_set = 0;
  P.dirty_mb = 0;
  P.dirty_rate_mbps = 1;
  P.mix_zero = 20;
  P.mix_text = 50;
  P.mix_random = 30;
  P.pattern_mem_mb = 16;
  P.pattern_disk_mb = 16;
  P.verify_every = 5;

  char *copy = strdup(cmdline);
  if (!copy) return;
  char *save = NULL;
  for (char *tok = strtok_r(copy, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
    if (strncmp(tok, "nc.", 3) != 0) continue;
    char *eq = strchr(tok, '=');
    const char *value = eq ? eq + 1 : "";
    if (eq) *eq = 0;
    const char *name = tok;
    if (strcmp(name, "nc.dirty_mb") == 0) {
      if (param_u64(name, value, 0, 1ULL << 20, &P.dirty_mb) != 0) dirty_bad = 1;
    } else if (strcmp(name, "nc.dirty_rate_mbps") == 0) {
      if (param_u64(name, value, 0, 100000, &P.dirty_rate_mbps) != 0) dirty_bad = 1;
    } else if (strcmp(name, "nc.mix") == 0) {
      if (parse_mix(value, &P.mix_zero, &P.mix_text, &P.mix_random) != 0) {
        param_error(name, value, "bad_mix");
        dirty_bad = 1;
      }
    } else if (strcmp(name, "nc.pattern_seed") == 0) {
      if (param_u64(name, value, 0, UINT64_MAX, &P.pattern_seed) != 0)
        pattern_bad = 1;
      else
        seed_set = 1;
    } else if (strcmp(name, "nc.pattern_mem_mb") == 0) {
      if (param_u64(name, value, 0, 1ULL << 20, &P.pattern_mem_mb) != 0) pattern_bad = 1;
    } else if (strcmp(name, "nc.pattern_disk_mb") == 0) {
      if (param_u64(name, value, 0, 1ULL << 30, &P.pattern_disk_mb) != 0) pattern_bad = 1;
    } else if (strcmp(name, "nc.verify_every") == 0) {
      if (param_u64(name, value, 1, 86400, &P.verify_every) != 0) pattern_bad = 1;
    } else if (strcmp(name, "nc.debug") == 0) {
      P.debug = strcmp(value, "1") == 0; /* also read by /init */
    } else {
      param_error(name, value, "unknown_param");
    }
  }
  free(copy);
  P.dirty_on = !dirty_bad && P.dirty_mb > 0;
  P.pattern_on = !pattern_bad && seed_set;
}

static uint64_t meminfo_kb(const char *key) {
  FILE *f = fopen("/proc/meminfo", "re");
  if (!f) return 0;
  char line[256];
  uint64_t v = 0;
  size_t klen = strlen(key);
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
      v = strtoull(line + klen + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

/* ---------------------------------------------------------------- heartbeat ------- */

static void *heartbeat_thread(void *arg) {
  (void)arg;
  /* Heartbeats must stay on time while the dirtier and verifier burn CPU on one vCPU. */
  struct sched_param sp = {.sched_priority = 10};
  pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
  uint64_t seq = 0;
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (;;) {
    next.tv_sec += 1;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
    }
    /* If we fell far behind (VM paused), do not burst: re-anchor on now. */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > next.tv_sec + 1) next = now;
    char up[64];
    read_uptime(up, sizeof up);
    emit("NC-HEARTBEAT seq=%" PRIu64 " uptime=%s", ++seq, up);
  }
  return NULL;
}

/* ---------------------------------------------------------------- dirtier --------- */

static const char *const WORDS[] = {
    "INFO",    "DEBUG",   "WARN",    "request", "response", "GET",     "POST",    "/api/v1/vms",
    "status",  "200",     "404",     "latency", "ms",       "user",    "session", "cache",
    "hit",     "miss",    "worker",  "queue",   "job",      "done",    "started", "migration",
    "host",    "node-a",  "node-b",  "memory",  "disk",     "page",    "bytes",   "ok",
    "the",     "of",      "and",     "to",      "in",       "for",     "with",    "on",
    "server",  "client",  "connect", "closed",  "retry",    "timeout", "token",   "config",
    "value",   "key",     "update",  "insert",  "select",   "from",    "where",   "table",
    "between", "across",  "cluster", "replica", "leader",   "follow",  "epoch",   "lease",
};
#define NWORDS (sizeof WORDS / sizeof WORDS[0])

static void fill_text_page(unsigned char *p, uint64_t *rng, uint64_t gen) {
  size_t off = 0;
  size_t words_in_line = 0;
  /* Each page opens with a log-like stamp so rewrites differ even for the same words. */
  char stamp[48];
  int n = snprintf(stamp, sizeof stamp, "%016" PRIx64 " INFO nc-dirtier: ", gen);
  memcpy(p, stamp, (size_t)n);
  off = (size_t)n;
  while (off < PAGE) {
    uint64_t r = xorshift64(rng);
    const char *w = WORDS[r % NWORDS];
    size_t wl = strlen(w);
    if (off + wl + 1 > PAGE) {
      memset(p + off, ' ', PAGE - off);
      p[PAGE - 1] = '\n';
      break;
    }
    memcpy(p + off, w, wl);
    off += wl;
    words_in_line++;
    char sep = ' ';
    if (words_in_line >= 8 + ((r >> 32) & 7)) {
      sep = '\n';
      words_in_line = 0;
    }
    p[off++] = (unsigned char)sep;
  }
}

static void fill_random_page(unsigned char *p, uint64_t *rng) {
  uint64_t *w = (uint64_t *)p;
  for (size_t i = 0; i < PAGE / 8; i++) w[i] = xorshift64(rng);
}

struct dirtier {
  unsigned char *mem;
  uint64_t npages;
  uint64_t rng;
  uint64_t gen;
  uint64_t cursor;
};

static void dirty_page(struct dirtier *d, uint64_t i) {
  unsigned char *p = d->mem + i * PAGE;
  unsigned c = (unsigned)(i % 100); /* page class is fixed by position: the mix holds at any rate */
  if (c < P.mix_zero) {
    memset(p, 0, PAGE);
  } else if (c < P.mix_zero + P.mix_text) {
    fill_text_page(p, &d->rng, d->gen++);
  } else {
    fill_random_page(p, &d->rng);
  }
}

static void *dirtier_thread(void *arg) {
  (void)arg;
  setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 5);
  struct dirtier d = {0};
  d.npages = P.dirty_mb * MIB / PAGE;
  d.rng = 0x2545F4914F6CDD1DULL;
  void *m = mmap(NULL, P.dirty_mb * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    emit("NC-ERROR param=nc.dirty_mb value=%" PRIu64 " reason=alloc_failed", P.dirty_mb);
    return NULL;
  }
  d.mem = m;
  for (uint64_t i = 0; i < d.npages; i++) dirty_page(&d, i); /* touch every page */
  emit("NC-DIRTY-START mb=%" PRIu64 " rate_mbps=%" PRIu64 " mix=zero:%u,text:%u,random:%u", P.dirty_mb,
       P.dirty_rate_mbps, P.mix_zero, P.mix_text, P.mix_random);

  const double pages_per_s = (double)P.dirty_rate_mbps * (double)(MIB / PAGE);
  double start = mono_now();
  double next_stats = start + 10.0;
  double credit_origin = start; /* pages due = (now - credit_origin) * rate - done */
  uint64_t done = 0;            /* pages re-dirtied since NC-DIRTY-START */
  for (;;) {
    double now = mono_now();
    if (pages_per_s > 0) {
      double due = (now - credit_origin) * pages_per_s - (double)done;
      /* Never build up more than one second of backlog (e.g. after the VM was paused). */
      if (due > pages_per_s) {
        credit_origin = now - ((double)done + pages_per_s) / pages_per_s;
        due = pages_per_s;
      }
      uint64_t n = due > 0 ? (uint64_t)due : 0;
      uint64_t cap = (uint64_t)(pages_per_s / 20.0) + 1; /* at most 50 ms worth per slice */
      if (n > cap) n = cap;
      for (uint64_t k = 0; k < n; k++) {
        dirty_page(&d, d.cursor);
        d.cursor = (d.cursor + 1) % d.npages;
      }
      done += n;
    }
    now = mono_now();
    if (now >= next_stats) {
      emit("NC-DIRTY-STATS pages_dirtied=%" PRIu64, done);
      next_stats += 10.0;
      if (next_stats < now) next_stats = now + 10.0;
    }
    sleep_s(pages_per_s > 0 ? 0.01 : (next_stats - now));
  }
  return NULL;
}

/* ---------------------------------------------------------------- pattern --------- */

struct pattern {
  uint64_t *mem; /* pattern_mem_mb MiB */
  uint64_t mem_words;
  int disk_fd;
  uint64_t disk_bytes; /* pattern bytes on disk, after the header block */
  unsigned char *iobuf;
};

static struct pattern PT;

static uint64_t fnv1a64(const unsigned char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Header block (4096 bytes, only sector 0 used, rest zero), little-endian:
 *   0  char[16] "NCPATTERN" zero-padded
 *  16  u32 version (1)
 *  20  u32 reserved (0)
 *  24  u64 seed
 *  32  u64 disk_mb
 *  40  u64 data offset in bytes (4096)
 *  48  u64 FNV-1a 64 of bytes 0..47 */
static void make_header(unsigned char *b) {
  memset(b, 0, PAGE);
  memcpy(b, HDR_MAGIC, strlen(HDR_MAGIC));
  put_u32(b + 16, HDR_VERSION);
  put_u64(b + 24, P.pattern_seed);
  put_u64(b + 32, P.pattern_disk_mb);
  put_u64(b + 40, DISK_DATA_OFFSET);
  put_u64(b + 48, fnv1a64(b, 48));
}

static int header_matches(const unsigned char *b) {
  unsigned char magic[16] = {0};
  memcpy(magic, HDR_MAGIC, strlen(HDR_MAGIC));
  if (memcmp(b, magic, 16) != 0) return 0;
  if (get_u64(b + 48) != fnv1a64(b, 48)) return 0;
  if (get_u32(b + 16) != HDR_VERSION) return 0;
  return get_u64(b + 24) == P.pattern_seed && get_u64(b + 32) == P.pattern_disk_mb &&
         get_u64(b + 40) == DISK_DATA_OFFSET;
}

static int pread_full(int fd, void *buf, size_t n, off_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static int pwrite_full(int fd, const void *buf, size_t n, off_t off) {
  size_t put = 0;
  while (put < n) {
    ssize_t r = pwrite(fd, (const char *)buf + put, n - put, off + (off_t)put);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    put += (size_t)r;
  }
  return 0;
}

/* Fill buf with disk pattern bytes for data-area offset `pos` (multiple of 8). */
static void disk_pattern_chunk(uint64_t *buf, uint64_t pos, size_t n) {
  const uint64_t base = P.pattern_seed ^ DOMAIN_DISK;
  uint64_t w0 = pos / 8;
  for (size_t i = 0; i < n / 8; i++) buf[i] = pattern_word(base, w0 + i);
}

static uint64_t first_bad_byte(uint64_t got, uint64_t want) {
  for (unsigned b = 0; b < 8; b++)
    if (((got >> (8 * b)) & 0xff) != ((want >> (8 * b)) & 0xff)) return b;
  return 0;
}

/* Returns -1 when the disk pattern matches, else the first bad byte's device offset. */
static int64_t verify_disk(void) {
  const uint64_t base = P.pattern_seed ^ DOMAIN_DISK;
  for (uint64_t pos = 0; pos < PT.disk_bytes; pos += DISK_IO_CHUNK) {
    size_t n = (size_t)(PT.disk_bytes - pos < DISK_IO_CHUNK ? PT.disk_bytes - pos : DISK_IO_CHUNK);
    off_t dev_off = (off_t)(DISK_DATA_OFFSET + pos);
    if (pread_full(PT.disk_fd, PT.iobuf, n, dev_off) != 0) return (int64_t)dev_off;
    const uint64_t *w = (const uint64_t *)PT.iobuf;
    uint64_t w0 = pos / 8;
    for (size_t i = 0; i < n / 8; i++) {
      uint64_t want = pattern_word(base, w0 + i);
      if (w[i] != want) return (int64_t)(dev_off + (off_t)(i * 8 + first_bad_byte(w[i], want)));
    }
  }
  return -1;
}

static int64_t verify_mem(void) {
  const uint64_t base = P.pattern_seed ^ DOMAIN_MEM;
  for (uint64_t i = 0; i < PT.mem_words; i++) {
    uint64_t want = pattern_word(base, i);
    if (PT.mem[i] != want) return (int64_t)(i * 8 + first_bad_byte(PT.mem[i], want));
  }
  return -1;
}

static void emit_verdict(uint64_t round) {
  int64_t bad = verify_mem();
  if (bad >= 0) {
    emit("NC-VERIFY FAIL seed=%" PRIu64 " what=mem offset=%" PRId64 " round=%" PRIu64, P.pattern_seed, bad,
         round);
    return;
  }
  if (PT.disk_bytes > 0) {
    bad = verify_disk();
    if (bad >= 0) {
      emit("NC-VERIFY FAIL seed=%" PRIu64 " what=disk offset=%" PRId64 " round=%" PRIu64, P.pattern_seed,
           bad, round);
      return;
    }
  }
  emit("NC-VERIFY PASS seed=%" PRIu64 " mem_mb=%" PRIu64 " disk_mb=%" PRIu64 " round=%" PRIu64, P.pattern_seed,
       P.pattern_mem_mb, P.pattern_disk_mb, round);
}

static void pattern_fail(const char *param, uint64_t value, const char *reason) {
  emit("NC-ERROR param=%s value=%" PRIu64 " reason=%s", param, value, reason);
}

/* Sets up the disk side. Returns 1 = written, 2 = existing, 0 = no disk pattern, -1 = error. */
static int pattern_disk_setup(void) {
  if (P.pattern_disk_mb == 0) return 0;
  int fd = -1;
  for (int tries = 0; tries < 100; tries++) { /* the block device may still be probing */
    fd = open(DISK_DEV, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd >= 0) break;
    sleep_s(0.1);
  }
  if (fd < 0) {
    pattern_fail("nc.pattern_disk_mb", P.pattern_disk_mb, "no_disk");
    return -1;
  }
  uint64_t size = 0;
  if (ioctl(fd, BLKGETSIZE64, &size) != 0 || DISK_DATA_OFFSET + P.pattern_disk_mb * MIB > size) {
    pattern_fail("nc.pattern_disk_mb", P.pattern_disk_mb, "exceeds_disk");
    close(fd);
    return -1;
  }
  PT.disk_fd = fd;
  PT.disk_bytes = P.pattern_disk_mb * MIB;
  void *b = NULL;
  if (posix_memalign(&b, PAGE, DISK_IO_CHUNK) != 0) {
    pattern_fail("nc.pattern_disk_mb", P.pattern_disk_mb, "alloc_failed");
    close(fd);
    return -1;
  }
  PT.iobuf = b;

  if (pread_full(fd, PT.iobuf, PAGE, 0) != 0) {
    pattern_fail("nc.pattern_disk_mb", P.pattern_disk_mb, "io_error");
    return -1;
  }
  if (header_matches(PT.iobuf)) return 2;

  /* Fresh disk (or another seed/size): invalidate any old header, write the data, flush,
   * then write the header last, so an interrupted write never looks complete. */
  memset(PT.iobuf, 0, PAGE);
  if (pwrite_full(fd, PT.iobuf, PAGE, 0) != 0 || fdatasync(fd) != 0) {
    pattern_fail("nc.pattern_disk_mb", P.pattern_disk_mb, "io_error");
    return -1;
  }
  for (uint64_t pos = 0; pos < PT.disk_bytes; pos += DISK_IO_CHUNK) {
    size_t n = (size_t)(PT.disk_bytes - pos < DISK_IO_CHUNK ? PT.disk_bytes - pos : DISK_IO_CHUNK);
    disk_pattern_chunk((uint64_t *)PT.iobuf, pos, n);
    if (pwrite_full(fd, PT.iobuf, n, (off_t)(DISK_DATA_OFFSET + pos)) != 0) {
      pattern_fail("nc.pattern_disk_mb", P.pattern_disk_mb, "io_error");
      return -1;
    }
  }
  if (fdatasync(fd) != 0) {
    pattern_fail("nc.pattern_disk_mb", P.pattern_disk_mb, "io_error");
    return -1;
  }
  make_header(PT.iobuf);
  if (pwrite_full(fd, PT.iobuf, PAGE, 0) != 0 || fdatasync(fd) != 0) {
    pattern_fail("nc.pattern_disk_mb", P.pattern_disk_mb, "io_error");
    return -1;
  }
  return 1;
}

static void *pattern_thread(void *arg) {
  (void)arg;
  setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 5);
  PT.disk_fd = -1;
  PT.mem_words = P.pattern_mem_mb * MIB / 8;
  if (P.pattern_mem_mb > 0) {
    void *m = mmap(NULL, P.pattern_mem_mb * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      pattern_fail("nc.pattern_mem_mb", P.pattern_mem_mb, "alloc_failed");
      return NULL;
    }
    PT.mem = m;
    const uint64_t base = P.pattern_seed ^ DOMAIN_MEM;
    for (uint64_t i = 0; i < PT.mem_words; i++) PT.mem[i] = pattern_word(base, i);
  }

  int disk = pattern_disk_setup();
  if (disk < 0) return NULL; /* error already printed: pattern off */
  if (disk == 2) emit_verdict(0); /* disk carried over from an earlier boot: verify it first */
  emit("NC-PATTERN-WRITTEN seed=%" PRIu64 " mem_mb=%" PRIu64 " disk_mb=%" PRIu64 " disk=%s", P.pattern_seed,
       P.pattern_mem_mb, P.pattern_disk_mb, disk == 1 ? "written" : disk == 2 ? "existing" : "none");

  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (uint64_t round = 1;; round++) {
    next.tv_sec += (time_t)P.verify_every;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
    }
    emit_verdict(round);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > next.tv_sec) next = now; /* a slow round never causes a burst */
  }
  return NULL;
}

/* ---------------------------------------------------------------- power button ---- */

#define MAX_EVDEV 32

static int powerd(void) {
  int fds[MAX_EVDEV];
  int nfds = 0;
  /* The input devices exist once /init has loaded button + evdev; wait briefly for them. */
  for (int tries = 0; tries < 50 && nfds == 0; tries++) {
    DIR *d = opendir("/dev/input");
    if (d) {
      struct dirent *e;
      while ((e = readdir(d)) && nfds < MAX_EVDEV) {
        if (strncmp(e->d_name, "event", 5) != 0) continue;
        char path[300];
        snprintf(path, sizeof path, "/dev/input/%s", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        unsigned long keys[KEY_MAX / (8 * sizeof(unsigned long)) + 1] = {0};
        if (ioctl(fd, EVIOCGBIT(EV_KEY, sizeof keys), keys) >= 0 &&
            (keys[KEY_POWER / (8 * sizeof(unsigned long))] >> (KEY_POWER % (8 * sizeof(unsigned long)))) & 1) {
          fds[nfds++] = fd;
        } else {
          close(fd);
        }
      }
      closedir(d);
    }
    if (nfds == 0) sleep_s(0.1);
  }
  if (nfds == 0) {
    emit("NC-ERROR param=powerd value=none reason=no_power_button");
    return 1;
  }
  /* Tell /init we are listening (it waits for this before starting the workload). */
  int rf = open("/run/nc-powerd.ready", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (rf >= 0) close(rf);

  struct pollfd pfd[MAX_EVDEV];
  for (int i = 0; i < nfds; i++) pfd[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
  for (;;) {
    int r = poll(pfd, (nfds_t)nfds, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      sleep_s(0.1);
      continue;
    }
    for (int i = 0; i < nfds; i++) {
      if (!(pfd[i].revents & POLLIN)) continue;
      struct input_event ev[16];
      ssize_t n = read(pfd[i].fd, ev, sizeof ev);
      for (ssize_t k = 0; n > 0 && k < n / (ssize_t)sizeof ev[0]; k++) {
        if (ev[k].type == EV_KEY && ev[k].code == KEY_POWER && ev[k].value == 1) {
          emit("NC-SHUTDOWN");
          sync();
          reboot(RB_POWER_OFF);
          /* only reached without CAP_SYS_BOOT */
          emit("NC-ERROR param=powerd value=poweroff reason=failed");
        }
      }
    }
  }
}

/* ---------------------------------------------------------------- main ------------ */

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--powerd") == 0) return powerd();

  char cmdline[4096] = {0};
  int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
  int cmdline_read = 0;
  if (fd >= 0) {
    ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
    close(fd);
    if (n > 0) {
      cmdline[n] = 0;
      cmdline_read = 1;
    }
  }
  parse_cmdline(cmdline);

  uint64_t mem_total_mb = meminfo_kb("MemTotal") / 1024;
  /* Budget from what is free right now (MemAvailable counts caches we cannot rely on). */
  uint64_t avail_kb = meminfo_kb("MemAvailable"), free_kb = meminfo_kb("MemFree");
  uint64_t avail_mb = (free_kb < avail_kb ? free_kb : avail_kb) / 1024;
  const uint64_t reserve_mb = 12; /* kernel allocations, stacks, page tables: never allocate into this */
  if (P.debug)
    emit("NC-DEBUG mem_free_kb=%" PRIu64 " mem_available_kb=%" PRIu64 " budget_mb=%" PRIu64, free_kb, avail_kb,
         avail_mb > reserve_mb ? avail_mb - reserve_mb : 0);

  /* Memory budget: the pattern comes first, the dirtier gets what is left. */
  if (P.pattern_on) {
    if (P.pattern_mem_mb + reserve_mb > avail_mb) {
      char v[32];
      snprintf(v, sizeof v, "%" PRIu64, P.pattern_mem_mb);
      param_error("nc.pattern_mem_mb", v, "exceeds_memory");
      P.pattern_on = 0;
    } else {
      avail_mb -= P.pattern_mem_mb;
    }
  }
  if (P.dirty_on && P.dirty_mb + reserve_mb > avail_mb) {
    char v[32];
    snprintf(v, sizeof v, "%" PRIu64, P.dirty_mb);
    param_error("nc.dirty_mb", v, "exceeds_memory");
    P.dirty_on = 0;
  }

  emit("NC-READY version=1 mem_mb=%" PRIu64 " cmdline_ok=%d", mem_total_mb,
       cmdline_read && P.errors == 0 ? 1 : 0);
  for (int i = 0; i < P.npending; i++) emit("%s", P.pending[i]);

  pthread_t hb, dt, pt;
  if (pthread_create(&hb, NULL, heartbeat_thread, NULL) != 0) {
    emit("NC-ERROR param=heartbeat value=thread reason=thread_failed");
    return 1;
  }
  if (P.dirty_on && pthread_create(&dt, NULL, dirtier_thread, NULL) != 0)
    emit("NC-ERROR param=nc.dirty_mb value=%" PRIu64 " reason=thread_failed", P.dirty_mb);
  if (P.pattern_on && pthread_create(&pt, NULL, pattern_thread, NULL) != 0)
    emit("NC-ERROR param=nc.pattern_seed value=%" PRIu64 " reason=thread_failed", P.pattern_seed);
  pthread_join(hb, NULL);
  return 0;
}
