/*
 * wanem: a user-space WAN link emulator for NovaCron's DWCP tests and benchmarks.
 *
 * It owns one emulated link between two network namespaces: it creates a TAP device in
 * each (entering them with setns), and forwards every Ethernet frame from one to the
 * other, applying per direction, in this order:
 *   1. a rate limit with a bounded drop-tail queue (the bottleneck router),
 *   2. random loss, Bernoulli or bursty (Gilbert-Elliott with a mean burst length),
 *   3. a one-way delay plus jitter, never reordering (delivery times are monotonic).
 * `tc netem` is not available on the machines NovaCron is tested on; this is its stand-in.
 *
 * Usage:
 *   wanem --ns-a /run/netns/A --dev-a tapA --ns-b /run/netns/B --dev-b tapB \
 *         [--ab SPEC] [--ba SPEC] [--seed N]
 * SPEC is comma-separated key=value: rate=100mbit (0 = unlimited), delay=25ms,
 * jitter=1ms, loss=0.1%, burst=4 (mean lost packets per loss event), queue=625000 (bytes).
 * It prints "ready" once both devices exist. Commands on stdin, one per line:
 *   set ab|ba|both SPEC   change the link (unspecified keys keep their value)
 *   stats                 print one JSON line of counters
 * It exits when stdin closes or on SIGTERM/SIGINT; the TAP devices vanish with it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 16384
#define SLOT_BYTES 2048

typedef struct {
  double rate_bps;   /* bits per second, 0 = unlimited */
  int64_t delay_ns;
  int64_t jitter_ns;
  double loss;       /* probability 0..1 */
  double burst;      /* mean burst length (>= 1) */
  int64_t queue_bytes;
} params_t;

typedef struct {
  int in_fd, out_fd;
  params_t p;
  unsigned char *buf;
  uint16_t len[SLOTS];
  int64_t at[SLOTS];
  uint32_t head, tail; /* ring: packets waiting for delivery */
  int64_t link_free_ns;
  int64_t last_deliver_ns;
  int bad_state;
  uint64_t rx_pkts, rx_bytes, tx_pkts, tx_bytes, drop_queue, drop_loss, drop_ring, write_err;
} dir_t;

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int s) { (void)s; stop_flag = 1; }

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static double rnd(void) { /* xorshift64*, uniform in [0,1) */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double parse_number(const char *v, char **end) { return strtod(v, end); }

/* Applies "key=value,..." to p. Returns 0 on success, -1 with a message on error. */
static int parse_spec(params_t *p, const char *spec) {
  char *copy = strdup(spec), *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq) { fprintf(stderr, "wanem: bad spec item '%s'\n", tok); free(copy); return -1; }
    *eq = 0;
    const char *k = tok, *v = eq + 1;
    char *unit;
    double x = parse_number(v, &unit);
    if (unit == v) { fprintf(stderr, "wanem: bad number in '%s=%s'\n", k, v); free(copy); return -1; }
    if (!strcmp(k, "rate")) {
      double m = 1;
      if (!strcasecmp(unit, "kbit")) m = 1e3; else if (!strcasecmp(unit, "mbit")) m = 1e6;
      else if (!strcasecmp(unit, "gbit")) m = 1e9; else if (*unit && strcasecmp(unit, "bit")) { fprintf(stderr, "wanem: bad rate unit '%s'\n", unit); free(copy); return -1; }
      p->rate_bps = x * m;
    } else if (!strcmp(k, "delay") || !strcmp(k, "jitter")) {
      double m = 1e6;
      if (!strcmp(unit, "us")) m = 1e3; else if (!strcmp(unit, "s")) m = 1e9; else if (*unit && strcmp(unit, "ms")) { fprintf(stderr, "wanem: bad time unit '%s'\n", unit); free(copy); return -1; }
      if (!strcmp(k, "delay")) p->delay_ns = (int64_t)(x * m); else p->jitter_ns = (int64_t)(x * m);
    } else if (!strcmp(k, "loss")) {
      p->loss = *unit == '%' ? x / 100.0 : x;
    } else if (!strcmp(k, "burst")) {
      p->burst = x < 1 ? 1 : x;
    } else if (!strcmp(k, "queue")) {
      p->queue_bytes = (int64_t)x;
    } else { fprintf(stderr, "wanem: unknown key '%s'\n", k); free(copy); return -1; }
  }
  free(copy);
  if (p->loss < 0 || p->loss >= 1) { fprintf(stderr, "wanem: loss must be in [0, 1)\n"); return -1; }
  return 0;
}

static int open_tap(const char *ns_path, const char *dev) {
  int ns = open(ns_path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) { perror("wanem: open netns"); return -1; }
  if (setns(ns, CLONE_NEWNET) < 0) { perror("wanem: setns"); close(ns); return -1; }
  close(ns);
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) { perror("wanem: open /dev/net/tun"); return -1; }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("wanem: TUNSETIFF"); close(fd); return -1; }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

/* Admits one frame read from d->in_fd at time t: queue, loss, delay. */
static void admit(dir_t *d, uint32_t slot, int len, int64_t t) {
  d->rx_pkts++;
  d->rx_bytes += (uint64_t)len;
  if (d->tail - d->head >= SLOTS) { d->drop_ring++; return; }
  int64_t depart = t;
  if (d->p.rate_bps > 0) {
    int64_t start = d->link_free_ns > t ? d->link_free_ns : t;
    double backlog = (double)(start - t) * d->p.rate_bps / 8e9;
    if (d->p.queue_bytes > 0 && backlog + len > (double)d->p.queue_bytes) { d->drop_queue++; return; }
    depart = start + (int64_t)((double)len * 8e9 / d->p.rate_bps);
    d->link_free_ns = depart;
  }
  if (d->p.loss > 0) {
    /* Gilbert-Elliott: the bad state drops everything and lasts `burst` packets on
     * average; entering it is rare enough that the long-run loss rate is `loss`. */
    double p_bg = 1.0 / d->p.burst;
    double p_gb = d->p.loss * p_bg / (1.0 - d->p.loss);
    if (d->bad_state) { if (rnd() < p_bg) d->bad_state = 0; }
    else if (rnd() < p_gb) d->bad_state = 1;
    if (d->bad_state) { d->drop_loss++; return; }
  }
  int64_t at = depart + d->p.delay_ns;
  if (d->p.jitter_ns > 0) at += (int64_t)((rnd() + rnd() - 1.0) * (double)d->p.jitter_ns);
  if (at < d->last_deliver_ns) at = d->last_deliver_ns;
  d->last_deliver_ns = at;
  uint32_t i = d->tail % SLOTS;
  if (i != slot) memcpy(d->buf + (size_t)i * SLOT_BYTES, d->buf + (size_t)slot * SLOT_BYTES, (size_t)len);
  d->len[i] = (uint16_t)len;
  d->at[i] = at;
  d->tail++;
}

static void read_some(dir_t *d) {
  for (int n = 0; n < 256; n++) {
    if (d->tail - d->head >= SLOTS) {
      /* Ring full: read into a scratch slot and drop, so the kernel queue keeps moving. */
      static unsigned char scratch[SLOT_BYTES];
      ssize_t r = read(d->in_fd, scratch, sizeof scratch);
      if (r <= 0) return;
      d->rx_pkts++; d->drop_ring++;
      continue;
    }
    uint32_t slot = d->tail % SLOTS;
    ssize_t r = read(d->in_fd, d->buf + (size_t)slot * SLOT_BYTES, SLOT_BYTES);
    if (r <= 0) return;
    admit(d, slot, (int)r, now_ns());
  }
}

static void deliver_due(dir_t *d, int64_t t) {
  while (d->head != d->tail) {
    uint32_t i = d->head % SLOTS;
    if (d->at[i] > t) break;
    ssize_t w = write(d->out_fd, d->buf + (size_t)i * SLOT_BYTES, d->len[i]);
    if (w < 0) d->write_err++; else { d->tx_pkts++; d->tx_bytes += (uint64_t)d->len[i]; }
    d->head++;
  }
}

static void print_stats(dir_t *ab, dir_t *ba) {
  dir_t *ds[2] = {ab, ba};
  const char *names[2] = {"ab", "ba"};
  printf("{");
  for (int k = 0; k < 2; k++) {
    dir_t *d = ds[k];
    printf("%s\"%s\":{\"rx_pkts\":%llu,\"rx_bytes\":%llu,\"tx_pkts\":%llu,\"tx_bytes\":%llu,\"drop_queue\":%llu,"
           "\"drop_loss\":%llu,\"drop_ring\":%llu,\"write_err\":%llu,\"rate_bps\":%.0f,\"delay_ns\":%lld,\"loss\":%g}",
           k ? "," : "", names[k], (unsigned long long)d->rx_pkts, (unsigned long long)d->rx_bytes,
           (unsigned long long)d->tx_pkts, (unsigned long long)d->tx_bytes, (unsigned long long)d->drop_queue,
           (unsigned long long)d->drop_loss, (unsigned long long)d->drop_ring, (unsigned long long)d->write_err,
           d->p.rate_bps, (long long)d->p.delay_ns, d->p.loss);
  }
  printf("}\n");
  fflush(stdout);
}

static void handle_command(char *line, dir_t *ab, dir_t *ba) {
  line[strcspn(line, "\r\n")] = 0;
  if (!strcmp(line, "stats")) { print_stats(ab, ba); return; }
  if (!strncmp(line, "set ", 4)) {
    char *which = line + 4, *sp = strchr(which, ' ');
    if (!sp) { printf("error missing spec\n"); fflush(stdout); return; }
    *sp = 0;
    const char *spec = sp + 1;
    int ok = 0;
    params_t a = ab->p, b = ba->p;
    if (!strcmp(which, "ab") || !strcmp(which, "both")) ok |= parse_spec(&a, spec) == 0 ? 1 : 4;
    if (!strcmp(which, "ba") || !strcmp(which, "both")) ok |= parse_spec(&b, spec) == 0 ? 2 : 4;
    if (ok == 0 || (ok & 4)) { printf("error bad set command\n"); fflush(stdout); return; }
    ab->p = a; ba->p = b;
    printf("ok\n");
    fflush(stdout);
    return;
  }
  printf("error unknown command\n");
  fflush(stdout);
}

int main(int argc, char **argv) {
  const char *ns_a = NULL, *dev_a = NULL, *ns_b = NULL, *dev_b = NULL, *spec_ab = "", *spec_ba = "";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--ns-a")) ns_a = argv[i + 1];
    else if (!strcmp(argv[i], "--dev-a")) dev_a = argv[i + 1];
    else if (!strcmp(argv[i], "--ns-b")) ns_b = argv[i + 1];
    else if (!strcmp(argv[i], "--dev-b")) dev_b = argv[i + 1];
    else if (!strcmp(argv[i], "--ab")) spec_ab = argv[i + 1];
    else if (!strcmp(argv[i], "--ba")) spec_ba = argv[i + 1];
    else if (!strcmp(argv[i], "--seed")) rng_state = strtoull(argv[i + 1], NULL, 10) * 2654435761ULL + 1;
    else { fprintf(stderr, "wanem: unknown option %s\n", argv[i]); return 2; }
  }
  if (!ns_a || !dev_a || !ns_b || !dev_b) { fprintf(stderr, "wanem: --ns-a --dev-a --ns-b --dev-b are required\n"); return 2; }
  static dir_t ab, ba;
  ab.p.burst = ba.p.burst = 1;
  if (parse_spec(&ab.p, spec_ab) || parse_spec(&ba.p, spec_ba)) return 2;
  int fa = open_tap(ns_a, dev_a);
  if (fa < 0) return 1;
  int fb = open_tap(ns_b, dev_b);
  if (fb < 0) return 1;
  ab.in_fd = fa; ab.out_fd = fb;
  ba.in_fd = fb; ba.out_fd = fa;
  ab.buf = malloc((size_t)SLOTS * SLOT_BYTES);
  ba.buf = malloc((size_t)SLOTS * SLOT_BYTES);
  if (!ab.buf || !ba.buf) { fprintf(stderr, "wanem: out of memory\n"); return 1; }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  printf("ready\n");
  fflush(stdout);

  char cmd[4096];
  size_t cmd_len = 0;
  while (!stop_flag) {
    int64_t t = now_ns();
    deliver_due(&ab, t);
    deliver_due(&ba, t);
    int64_t next = -1;
    if (ab.head != ab.tail) next = ab.at[ab.head % SLOTS];
    if (ba.head != ba.tail) { int64_t n2 = ba.at[ba.head % SLOTS]; if (next < 0 || n2 < next) next = n2; }
    struct pollfd pf[3] = {{fa, POLLIN, 0}, {fb, POLLIN, 0}, {0, POLLIN, 0}};
    struct timespec ts, *tsp = NULL;
    if (next >= 0) {
      int64_t wait = next - now_ns();
      if (wait < 0) wait = 0;
      ts.tv_sec = wait / 1000000000LL;
      ts.tv_nsec = wait % 1000000000LL;
      tsp = &ts;
    }
    int r = ppoll(pf, 3, tsp, NULL);
    if (r < 0) { if (errno == EINTR) continue; perror("wanem: ppoll"); return 1; }
    if (pf[0].revents & POLLIN) read_some(&ab);
    if (pf[1].revents & POLLIN) read_some(&ba);
    if (pf[2].revents & (POLLIN | POLLHUP)) {
      ssize_t n = read(0, cmd + cmd_len, sizeof cmd - 1 - cmd_len);
      if (n == 0) break; /* stdin closed: the owner is gone */
      if (n > 0) {
        cmd_len += (size_t)n;
        cmd[cmd_len] = 0;
        char *nl;
        while ((nl = strchr(cmd, '\n')) != NULL) {
          *nl = 0;
          handle_command(cmd, &ab, &ba);
          size_t used = (size_t)(nl - cmd) + 1;
          memmove(cmd, cmd + used, cmd_len - used + 1);
          cmd_len -= used;
        }
        if (cmd_len >= sizeof cmd - 1) cmd_len = 0;
      }
    }
    if (pf[0].revents & (POLLERR | POLLHUP | POLLNVAL) || pf[1].revents & (POLLERR | POLLHUP | POLLNVAL)) break;
  }
  return 0;
}
