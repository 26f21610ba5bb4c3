<?php /* A page that only says something: otpd down, a lock, an expired sign-in, a refused form. */ ?>
<p class="message info" id="message"><?= $h->e($v['text']) ?></p>
<?php if (($v['link'] ?? '') !== '') : ?>
<p><a href="<?= $h->e($v['link']) ?>"><?= $h->e($v['linkText'] ?? 'Continue') ?></a></p>
<?php endif; ?>
