"""common.masking: card codes never leave the chat bubble whole."""

from common.masking import mask_card_codes


def test_masks_the_middle_of_every_code() -> None:
    text = "code K7QM-2XPA-9FTR-4WZD and 卡密AB12-CD34-EF56-GH78不行"
    assert mask_card_codes(text) == "code K7QM-****-****-4WZD and 卡密AB12-****-****-GH78不行"


def test_leaves_other_text_alone() -> None:
    assert (
        mask_card_codes("order DG202611230017, phone 13812345678")
        == "order DG202611230017, phone 13812345678"
    )
