/* The TCP framing reference of `make bench` (section goals, issue 25), compiled
 * by the benchmark with the machine's cc (-O2) and run as its own process, so that
 * its CPU time is read the way bsc's is (/proc/PID/schedstat, pinned to the
 * same core).
 *
 *   tcp_reference HOST PORT FILE
 *
 * Connects to HOST:PORT and reads the stream in 256 KiB reads; cuts CCSDS space
 * packets by their length field (6-byte primary header, packet = data length + 7
 * bytes); appends a 16-byte pcap record header (one clock_gettime per read) and
 * the packet to a 1 MiB buffer, written to FILE (a classic pcap file, link type
 * 147) when the next record would not fit, and at the end of the stream. Then it
 * prints "done RECORDS" and waits until its standard input closes, so that the
 * benchmark reads its CPU time while the process still exists. Exits 1 with a
 * message on any error. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE (256 * 1024)
#define OUT_SIZE (1024 * 1024)
#define MAX_PACKET (65535 + 7)

static unsigned char in[MAX_PACKET + READ_SIZE];
static unsigned char out[OUT_SIZE];

static void fail(const char *what) {
    fprintf(stderr, "tcp_reference: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            fail("write");
        }
        p += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: tcp_reference HOST PORT FILE\n");
        return 2;
    }
    int file = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (file < 0)
        fail(argv[3]);
    uint32_t global[6] = {0xa1b2c3d4u, 2 | (4u << 16), 0, 0, 65535, 147};
    write_all(file, (const unsigned char *)global, sizeof global);

    int sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        fail("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "tcp_reference: %s is not an IPv4 address\n", argv[1]);
        return 2;
    }
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0)
        fail("connect");

    size_t have = 0, used = 0;
    unsigned long long records = 0;
    for (;;) {
        ssize_t r = read(sock, in + have, READ_SIZE);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fail("read");
        }
        if (r == 0)
            break;
        have += (size_t)r;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        size_t pos = 0;
        while (have - pos >= 6) {
            size_t len = (((size_t)in[pos + 4] << 8) | in[pos + 5]) + 7;
            if (have - pos < len)
                break;
            if (used + 16 + len > OUT_SIZE) {
                write_all(file, out, used);
                used = 0;
            }
            uint32_t h[4] = {(uint32_t)ts.tv_sec, (uint32_t)(ts.tv_nsec / 1000), (uint32_t)len, (uint32_t)len};
            memcpy(out + used, h, 16);
            memcpy(out + used + 16, in + pos, len);
            used += 16 + len;
            pos += len;
            records++;
        }
        /* What is left is part of one packet: less than MAX_PACKET bytes. */
        memmove(in, in + pos, have - pos);
        have -= pos;
    }
    write_all(file, out, used);
    if (have != 0)
        fprintf(stderr, "tcp_reference: %zu bytes of a torn last packet dropped\n", have);
    printf("done %llu\n", records);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    return 0;
}
