/* Number printing for the test systems' C protection domains
 * (tests/big-pool, tests/iommu): microkit_dbg_puts of a value. */
#ifndef CAPBUF_TESTS_PRINT_H
#define CAPBUF_TESTS_PRINT_H

#include <stdint.h>
#include <microkit.h>

/* `value` as 0x and 16 hex digits. */
static inline void put_hex(uint64_t value)
{
    char digits[19] = "0x";
    for (int i = 0; i < 16; i++) {
        digits[2 + i] = "0123456789abcdef"[(value >> (60 - 4 * i)) & 0xf];
    }
    digits[18] = 0;
    microkit_dbg_puts(digits);
}

/* `value` in decimal. */
static inline void put_dec(uint64_t value)
{
    char digits[21];
    int i = 20;
    digits[i] = 0;
    do {
        digits[--i] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    microkit_dbg_puts(&digits[i]);
}

#endif
