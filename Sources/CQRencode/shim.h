// Debian's libqrencode (libqrencode-dev): QR code symbols for otpctl's `totp enroll`.
#include <qrencode.h>
