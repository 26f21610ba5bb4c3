int cotpsys_placeholder(void);
