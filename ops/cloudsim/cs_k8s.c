/* cs_k8s.c: the Kubernetes API of each simulated cluster, under /k8s/{cluster_id}. */
#include "cs_api.h"

void cs_k8s_handle(cs_call *c)
{
    cs_reply_k8s(c, 501, "NotImplemented", NULL, NULL, "not implemented yet");
}
