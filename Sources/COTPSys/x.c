int cotpsys_placeholder(void){return 0;}
