/* The pod sandbox's process for mypod's CRI tests (the pause image built by
 * scripts/build-pause-image.sh), doing what Kubernetes' pause does: sleep until told to stop,
 * reap every child it inherits as pid 1 of a shared pid namespace, exit 0 on SIGINT/SIGTERM.
 * Built with `gcc -static -Os`: the image holds nothing but this binary. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    int saved = errno;
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static int handle(int sig, void (*fn)(int), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("mypod-test pause\n");
        return 0;
    }
    if (getpid() != 1)
        fprintf(stderr, "pause: warning: not pid 1\n");
    if (handle(SIGINT, on_stop, 0) || handle(SIGTERM, on_stop, 0) ||
        handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART)) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;)
        pause();
}
