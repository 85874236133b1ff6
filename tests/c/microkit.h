/* A stand-in for the Microkit SDK's microkit.h, for testing capbuf_client.h
 * on the host: microkit_ppcall writes each request (label, length, message
 * registers) to stdout and answers with the next reply read from stdin
 * (label, extra caps, length, registers), which the Rust test encoded with
 * the capbuf protocol crate. Only what capbuf_client.h uses is here. */
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef unsigned int microkit_channel;
typedef struct {
    uint64_t label;
    uint64_t extra_caps;
    uint64_t length;
} microkit_msginfo;

static uint64_t fake_mrs[64];

static inline microkit_msginfo microkit_msginfo_new(uint64_t label, uint16_t count)
{
    microkit_msginfo info = {label, 0, count};
    return info;
}
static inline uint64_t microkit_msginfo_get_label(microkit_msginfo info) { return info.label; }
static inline uint64_t seL4_MessageInfo_get_extraCaps(microkit_msginfo info) { return info.extra_caps; }
static inline uint64_t seL4_MessageInfo_get_length(microkit_msginfo info) { return info.length; }
static inline void microkit_mr_set(uint8_t mr, uint64_t value) { fake_mrs[mr] = value; }
static inline uint64_t microkit_mr_get(uint8_t mr) { return fake_mrs[mr]; }

static inline microkit_msginfo microkit_ppcall(microkit_channel channel, microkit_msginfo request)
{
    printf("call %u %llu %llu", channel, (unsigned long long)request.label, (unsigned long long)request.length);
    for (uint64_t i = 0; i < request.length; i++) {
        printf(" %llu", (unsigned long long)fake_mrs[i]);
    }
    printf("\n");
    unsigned long long label, caps, length;
    if (scanf("%llu %llu %llu", &label, &caps, &length) != 3 || length > 64) {
        exit(2);
    }
    for (unsigned long long i = 0; i < length; i++) {
        unsigned long long word;
        if (scanf("%llu", &word) != 1) {
            exit(2);
        }
        fake_mrs[i] = word;
    }
    microkit_msginfo reply = {label, caps, length};
    return reply;
}
