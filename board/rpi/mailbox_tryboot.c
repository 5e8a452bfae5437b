// SPDX-License-Identifier: GPL-2.0
/*
 * Sets the Raspberry Pi firmware's tryboot flag for the next reboot, as the
 * Raspberry Pi kernel does for `reboot "0 tryboot"` (Debian's kernel does
 * not): loading this module is the request; init reboots right after.
 */
#include <linux/module.h>
#include <linux/of.h>
#include <soc/bcm2835/raspberrypi-firmware.h>

/* The firmware's property tag (not in the upstream header). */
#define MAILBOX_SET_REBOOT_FLAGS 0x00038064
#define MAILBOX_REBOOT_TRYBOOT 0x1

static int __init mailbox_tryboot_init(void)
{
	struct device_node *node;
	struct rpi_firmware *fw;
	u32 flags = MAILBOX_REBOOT_TRYBOOT;
	int ret;

	node = of_find_compatible_node(NULL, NULL, "raspberrypi,bcm2835-firmware");
	if (!node)
		return -ENODEV;
	fw = rpi_firmware_get(node);
	of_node_put(node);
	if (!fw)
		return -EPROBE_DEFER;
	ret = rpi_firmware_property(fw, MAILBOX_SET_REBOOT_FLAGS, &flags, sizeof(flags));
	rpi_firmware_put(fw);
	if (ret)
		return ret;
	pr_info("mailbox_tryboot: the next reboot is a tryboot\n");
	return 0;
}

static void __exit mailbox_tryboot_exit(void)
{
}

module_init(mailbox_tryboot_init);
module_exit(mailbox_tryboot_exit);
MODULE_DESCRIPTION("Raspberry Pi: set the tryboot flag for the next reboot");
MODULE_LICENSE("GPL");
