/* cs_vpc.c: VPC v3 security-group rules: list, create, show, delete. */
#include "cs_api.h"

void cs_vpc_handle(cs_call *c)
{
    cs_reply_cloud(c, 501, "VPC.0501", "not implemented yet");
}
