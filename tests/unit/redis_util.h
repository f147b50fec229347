/* redis_util.h: a private redis-server on a unix socket for the unit suites that need a real
 * one (header only).  Each suite includes it once: the state below is that suite's. */
#ifndef REDIS_UTIL_H
#define REDIS_UTIL_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char redis_dir[] = "/tmp/mbtestXXXXXX";
static char sock[256]; /* the server's socket path */
static char url[300];  /* its REDIS_URL */
static pid_t redis_pid = -1;

/* Starts redis-server (no persistence) and waits for its socket: 0, or -1. */
static inline int redis_start(void)
{
    signal(SIGPIPE, SIG_IGN); /* a test may stop Redis under a live connection */
    if (mkdtemp(redis_dir) == NULL)
        return -1;
    snprintf(sock, sizeof(sock), "%s/r.sock", redis_dir);
    snprintf(url, sizeof(url), "unix://%s", sock);
    redis_pid = fork();
    if (redis_pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--save", "",
               "--appendonly", "no", "--dir", redis_dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 400; i++) {
        struct stat st;
        struct timespec ts = {0, 25 * 1000 * 1000};
        if (stat(sock, &st) == 0)
            return 0;
        nanosleep(&ts, NULL);
    }
    return -1;
}

/* Kills the server (a stopped one too).  Safe to call twice. */
static inline void redis_kill(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGCONT);
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
}

/* redis_kill, then removes the socket and its directory. */
static inline void redis_cleanup(void)
{
    redis_kill();
    unlink(sock);
    rmdir(redis_dir);
}

#endif
